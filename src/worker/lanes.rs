//! How many calls each priority lane may hold and when a claim is worth making: pure.

/// The share of `concurrency` each lane may hold, and `normal` and `low` together: a backlog
/// of bulk traffic never takes the quarter of the slots kept for `critical` and `high`.
pub fn lane_caps(concurrency: usize) -> ([usize; 4], usize) {
    let bulk = (concurrency * 3 / 4).max(1);
    (
        [concurrency, concurrency, bulk, (concurrency / 2).max(1)],
        bulk,
    )
}

/// What each lane, and bulk traffic together, may still claim with `in_flight` calls out.
pub fn lane_room(concurrency: usize, in_flight: [usize; 4]) -> ([usize; 4], usize) {
    let (caps, bulk) = lane_caps(concurrency);
    (
        std::array::from_fn(|i| caps[i].saturating_sub(in_flight[i])),
        bulk.saturating_sub(in_flight[2] + in_flight[3]),
    )
}

/// The fewest free slots worth a claim while calls are in flight: a quarter of them.
pub fn claim_floor(concurrency: usize, claim_batch: usize) -> usize {
    (concurrency / 4).clamp(1, claim_batch.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_wait_for_a_quarter_of_the_slots_within_the_batch() {
        assert_eq!(claim_floor(64, 256), 16);
        assert_eq!(claim_floor(1024, 256), 256);
        assert_eq!(claim_floor(3, 256), 1);
        assert_eq!(claim_floor(0, 0), 1);
    }

    /// Whatever bulk traffic holds, a quarter of the slots stays for critical and high.
    #[test]
    fn bulk_traffic_leaves_a_reserve_for_critical_and_high() {
        for c in 1..=64usize {
            let (caps, bulk_cap) = lane_caps(c);
            // Every state bulk traffic can reach: within its caps.
            for normal in 0..=bulk_cap {
                for low in 0..=caps[3].min(bulk_cap - normal) {
                    let (room, bulk) = lane_room(c, [0, 0, normal, low]);
                    let most_bulk = normal + low + bulk.min(room[2] + room[3]);
                    assert!(most_bulk <= (c * 3 / 4).max(1), "c={c} n={normal} l={low}");
                    assert!(room[0] >= c - normal - low, "critical may use the rest");
                }
            }
        }
        assert_eq!(lane_room(64, [0, 0, 48, 0]), ([64, 64, 0, 32], 0));
        assert_eq!(lane_room(64, [0, 0, 0, 32]), ([64, 64, 48, 0], 16));
    }
}
