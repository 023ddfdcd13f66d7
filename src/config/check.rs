//! The checks of a loaded configuration that go beyond the shape of the file.

use super::*;

impl Config {
    /// Checks that go beyond the shape of the file.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            key: key.into(),
            message,
        };
        if self.server.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(invalid(
                "server.listen",
                format!(
                    "`{}` is not an address like 127.0.0.1:8080",
                    self.server.listen
                ),
            ));
        }
        if let Some(u) = &self.server.public_url {
            url::Url::parse(u).map_err(|e| invalid("server.public_url", e.to_string()))?;
        }
        self.backend()?;
        if let Some(r) = &self.backup.encrypt_to {
            crate::backup::archive::parse_recipient(r)
                .map_err(|e| invalid("backup.encrypt_to", e.to_string()))?;
        }
        if self.backup.keep == 0 {
            return Err(invalid("backup.keep", "must be at least 1".into()));
        }
        if self.backup.every.is_some_and(|d| d.0.as_secs() < 1) {
            return Err(invalid("backup.every", "must be at least 1s".into()));
        }
        if !["text", "json"].contains(&self.log.format.as_str()) {
            return Err(invalid("log.format", "must be `text` or `json`".into()));
        }
        let d = &self.dispatch;
        if d.concurrency == 0 || d.claim_batch == 0 || d.max_attempts == 0 || d.retry_factor == 0 {
            return Err(invalid(
                "dispatch",
                "concurrency, claim_batch, max_attempts and retry_factor must be at least 1".into(),
            ));
        }
        if d.lease.0.as_millis() < 1000 {
            return Err(invalid("dispatch.lease", "must be at least 1s".into()));
        }
        let mut names = std::collections::HashSet::new();
        for (i, k) in self.api_keys.iter().enumerate() {
            if k.key.expose().len() < 16 {
                return Err(invalid(
                    &format!("api_keys[{i}].key"),
                    "must be at least 16 characters".into(),
                ));
            }
            if k.name.eq_ignore_ascii_case("admin") {
                return Err(invalid(
                    &format!("api_keys[{i}].name"),
                    "`admin` is the bootstrap key's name: pick another".into(),
                ));
            }
            if !names.insert(k.name.as_str()) {
                return Err(invalid(
                    &format!("api_keys[{i}].name"),
                    format!("duplicate key name `{}`", k.name),
                ));
            }
        }
        if self.cluster.dead_after.0 <= self.cluster.heartbeat.0 {
            return Err(invalid(
                "cluster.dead_after",
                "must be longer than cluster.heartbeat".into(),
            ));
        }
        let c = &self.circuit;
        if !(0.0..=1.0).contains(&c.failure_rate) || c.failure_rate == 0.0 {
            return Err(invalid(
                "circuit.failure_rate",
                "must be above 0 and at most 1".into(),
            ));
        }
        for (from, to) in &self.degrade {
            if to.contains(from) {
                return Err(invalid(
                    &format!("degrade.{from}"),
                    "a channel cannot degrade to itself".into(),
                ));
            }
        }
        let mut ids = std::collections::HashSet::new();
        for (i, p) in self.providers.iter().enumerate() {
            if p.id.is_empty()
                || !p
                    .id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(invalid(
                    &format!("providers[{i}].id"),
                    "must be letters, digits, `-` or `_`".into(),
                ));
            }
            if !ids.insert(p.id.as_str()) {
                return Err(invalid(
                    &format!("providers[{i}].id"),
                    format!("duplicate provider id `{}`", p.id),
                ));
            }
        }
        self.compiled_routes()?;
        self.compiled_heartbeats()?;
        if let Err((key, message)) = self.approvals.check() {
            return Err(invalid(&key, message));
        }
        let ttl = self.console.session_ttl.0;
        if ttl < std::time::Duration::from_secs(1)
            || ttl > std::time::Duration::from_secs(30 * 86_400)
        {
            return Err(invalid(
                "console.session_ttl",
                "must be between 1s and 30d".into(),
            ));
        }
        let refresh = self.status.refresh.0;
        if refresh < std::time::Duration::from_millis(100)
            || refresh > std::time::Duration::from_secs(3600)
        {
            return Err(invalid(
                "status.refresh",
                "must be between 100ms and 1h".into(),
            ));
        }
        if self.status.name.trim().is_empty() || self.status.name.chars().count() > 100 {
            return Err(invalid("status.name", "1 to 100 characters".into()));
        }
        if self.backup.full_every == 0 || self.backup.full_every > 1000 {
            return Err(invalid("backup.full_every", "1 to 1000".into()));
        }
        if let Some((key, message)) = self.backup.offsite.as_ref().and_then(|o| o.check()) {
            return Err(invalid(key, message));
        }
        if let Some(e) = &self.telemetry.otlp_endpoint
            && let Err(why) = crate::telemetry::export_url(e)
        {
            return Err(invalid("telemetry.otlp_endpoint", why));
        }
        if self.telemetry.service_name.trim().is_empty()
            || self.telemetry.service_name.chars().count() > 100
        {
            return Err(invalid(
                "telemetry.service_name",
                "1 to 100 characters".into(),
            ));
        }
        for (name, value) in &self.telemetry.headers {
            if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err()
                || reqwest::header::HeaderValue::from_str(value.expose()).is_err()
            {
                return Err(invalid(
                    &format!("telemetry.headers.{name}"),
                    "not a valid HTTP header".into(),
                ));
            }
        }
        let timeout = self.telemetry.timeout.0;
        if timeout < std::time::Duration::from_millis(100)
            || timeout > std::time::Duration::from_secs(60)
        {
            return Err(invalid(
                "telemetry.timeout",
                "must be between 100ms and 60s".into(),
            ));
        }
        if let Some(m) = self.oncall.check().into_iter().next() {
            let (key, message) = m.split_once(": ").unwrap_or(("oncall", m.as_str()));
            return Err(invalid(key, message.to_string()));
        }
        Ok(())
    }

    /// `[[heartbeats]]` compiled; errors name the field; ids unique.
    pub fn compiled_heartbeats(
        &self,
    ) -> Result<Vec<crate::core::alerts::heartbeats::Heartbeat>, ConfigError> {
        let routes: Vec<&str> = self.alert_routes.iter().map(|r| r.id.as_str()).collect();
        let mut out: Vec<crate::core::alerts::heartbeats::Heartbeat> = Vec::new();
        for (i, h) in self.heartbeats.iter().enumerate() {
            let at = format!("heartbeats[{i}]");
            let hb = crate::core::alerts::heartbeats::Heartbeat::compile(h, &at, &routes).map_err(
                |message| ConfigError::Invalid {
                    key: at.clone(),
                    message,
                },
            )?;
            if out.iter().any(|o| o.cfg.id == h.id) {
                return Err(ConfigError::Invalid {
                    key: at,
                    message: format!("duplicate heartbeat id `{}`", h.id),
                });
            }
            out.push(hb);
        }
        Ok(out)
    }

    /// `[[alert_routes]]` compiled; errors name the route's field. Chat groups must be chat
    /// providers; ids, tokens and routing keys unique.
    pub fn compiled_routes(&self) -> Result<Vec<crate::core::alerts::routes::Route>, ConfigError> {
        let mut out: Vec<crate::core::alerts::routes::Route> = Vec::new();
        for (i, r) in self.alert_routes.iter().enumerate() {
            let at = format!("alert_routes[{i}]");
            let invalid = |message: String| ConfigError::Invalid {
                key: at.clone(),
                message,
            };
            let route = crate::core::alerts::routes::Route::compile(r, &at).map_err(invalid)?;
            if out.iter().any(|o| o.cfg.id == r.id) {
                return Err(invalid(format!("duplicate route id `{}`", r.id)));
            }
            for c in &r.chat {
                if !self
                    .providers
                    .iter()
                    .any(|p| p.id == *c && p.channel == Channel::Chat)
                {
                    return Err(invalid(format!("chat `{c}` is not a chat provider")));
                }
            }
            if let Some(t) = &r.template
                && !self.templates.iter().any(|x| x.id == *t)
            {
                return Err(invalid(format!("template `{t}` is not configured")));
            }
            let same = |a: &Option<Secret>, b: &Option<Secret>| matches!((a, b), (Some(x), Some(y)) if x.expose() == y.expose());
            if out
                .iter()
                .any(|o| same(&o.cfg.routing_key, &r.routing_key) || same(&o.cfg.token, &r.token))
            {
                return Err(invalid(
                    "its token or routing_key is another route's: each must be its own".into(),
                ));
            }
            out.push(route);
        }
        Ok(out)
    }
}
