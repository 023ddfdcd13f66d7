//! The OTLP trace export request, as protobuf: the messages of
//! `opentelemetry/proto/collector/trace/v1/trace_service.proto` and what they contain
//! (`trace/v1/trace.proto`, `common/v1/common.proto`, `resource/v1/resource.proto`), with
//! their field numbers. Only the fields Herald fills are declared; a receiver reads the rest
//! as unset. The integration test decodes what is sent with the official definitions.

use super::span::{Kind, SpanRecord, Value};

#[derive(Clone, PartialEq, prost::Message)]
pub struct ExportTraceServiceRequest {
    #[prost(message, repeated, tag = "1")]
    pub resource_spans: Vec<ResourceSpans>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ResourceSpans {
    #[prost(message, optional, tag = "1")]
    pub resource: Option<Resource>,
    #[prost(message, repeated, tag = "2")]
    pub scope_spans: Vec<ScopeSpans>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Resource {
    #[prost(message, repeated, tag = "1")]
    pub attributes: Vec<KeyValue>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ScopeSpans {
    #[prost(message, optional, tag = "1")]
    pub scope: Option<InstrumentationScope>,
    #[prost(message, repeated, tag = "2")]
    pub spans: Vec<Span>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct InstrumentationScope {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub version: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Span {
    #[prost(bytes = "vec", tag = "1")]
    pub trace_id: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub span_id: Vec<u8>,
    #[prost(bytes = "vec", tag = "4")]
    pub parent_span_id: Vec<u8>,
    #[prost(string, tag = "5")]
    pub name: String,
    /// SpanKind: 1 internal, 2 server, 3 client.
    #[prost(int32, tag = "6")]
    pub kind: i32,
    #[prost(fixed64, tag = "7")]
    pub start_time_unix_nano: u64,
    #[prost(fixed64, tag = "8")]
    pub end_time_unix_nano: u64,
    #[prost(message, repeated, tag = "9")]
    pub attributes: Vec<KeyValue>,
    #[prost(message, optional, tag = "15")]
    pub status: Option<Status>,
    /// W3C trace flags in the low byte (sampled: 1).
    #[prost(fixed32, tag = "16")]
    pub flags: u32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Status {
    #[prost(string, tag = "2")]
    pub message: String,
    /// 0 unset, 1 ok, 2 error.
    #[prost(int32, tag = "3")]
    pub code: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct KeyValue {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(message, optional, tag = "2")]
    pub value: Option<AnyValue>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct AnyValue {
    #[prost(oneof = "any_value::Value", tags = "1, 2, 3")]
    pub value: Option<any_value::Value>,
}

pub mod any_value {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Value {
        #[prost(string, tag = "1")]
        StringValue(String),
        #[prost(bool, tag = "2")]
        BoolValue(bool),
        #[prost(int64, tag = "3")]
        IntValue(i64),
    }
}

fn key_value(key: &str, v: &Value) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(match v {
                Value::Str(s) => any_value::Value::StringValue(s.clone()),
                Value::Int(i) => any_value::Value::IntValue(*i),
                Value::Bool(b) => any_value::Value::BoolValue(*b),
            }),
        }),
    }
}

/// Who sends the spans: `service.name`, `service.version`, `service.instance.id`.
#[derive(Debug, Clone)]
pub struct Origin {
    pub service: String,
    pub node: String,
}

/// One request carrying `spans`, encoded.
pub fn encode(origin: &Origin, spans: &[SpanRecord]) -> Vec<u8> {
    let resource = Resource {
        attributes: vec![
            key_value("service.name", &Value::Str(origin.service.clone())),
            key_value(
                "service.version",
                &Value::Str(env!("CARGO_PKG_VERSION").into()),
            ),
            key_value("service.instance.id", &Value::Str(origin.node.clone())),
        ],
    };
    let spans = spans
        .iter()
        .map(|s| Span {
            trace_id: s.ctx.trace_id.to_vec(),
            span_id: s.ctx.span_id.to_vec(),
            parent_span_id: s.parent.map(|p| p.to_vec()).unwrap_or_default(),
            name: s.name.clone(),
            kind: match s.kind {
                Kind::Internal => 1,
                Kind::Server => 2,
                Kind::Client => 3,
            },
            start_time_unix_nano: s.start_ns,
            end_time_unix_nano: s.end_ns.max(s.start_ns),
            attributes: s.attrs.iter().map(|(k, v)| key_value(k, v)).collect(),
            status: Some(match &s.error {
                Some(m) => Status {
                    message: m.clone(),
                    code: 2,
                },
                None => Status {
                    message: String::new(),
                    code: 0,
                },
            }),
            flags: u32::from(s.ctx.sampled),
        })
        .collect();
    let req = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "herald".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                }),
                spans,
            }],
        }],
    };
    prost::Message::encode_to_vec(&req)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::TraceParent;
    use prost::Message;

    #[test]
    fn a_span_survives_encoding_with_its_ids_times_and_attributes() {
        let ctx = TraceParent::root();
        let parent = TraceParent::root().child();
        let span = SpanRecord {
            ctx,
            parent: Some(parent.span_id),
            name: "send sms-1".into(),
            kind: Kind::Client,
            start_ns: 10,
            end_ns: 20,
            attrs: vec![
                ("herald.provider".into(), Value::Str("sms-1".into())),
                ("herald.tries".into(), Value::Int(2)),
            ],
            error: Some("timeout".into()),
        };
        let origin = Origin {
            service: "herald".into(),
            node: "n1".into(),
        };
        let bytes = encode(&origin, &[span]);
        let back = ExportTraceServiceRequest::decode(bytes.as_slice()).unwrap();
        let s = &back.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(s.trace_id, ctx.trace_id.to_vec());
        assert_eq!(s.span_id, ctx.span_id.to_vec());
        assert_eq!(s.parent_span_id, parent.span_id.to_vec());
        assert_eq!(
            (s.kind, s.start_time_unix_nano, s.end_time_unix_nano),
            (3, 10, 20)
        );
        assert_eq!(s.status.as_ref().map(|s| s.code), Some(2));
        assert_eq!(s.attributes.len(), 2);
        let res = back.resource_spans[0].resource.as_ref().unwrap();
        assert!(res.attributes.iter().any(|kv| kv.key == "service.name"));
    }

    #[test]
    fn an_end_before_the_start_is_sent_as_the_start() {
        let span = SpanRecord {
            ctx: TraceParent::root(),
            parent: None,
            name: "accept".into(),
            kind: Kind::Server,
            start_ns: 50,
            end_ns: 40,
            attrs: vec![],
            error: None,
        };
        let origin = Origin {
            service: "herald".into(),
            node: "n1".into(),
        };
        let back = ExportTraceServiceRequest::decode(encode(&origin, &[span]).as_slice()).unwrap();
        let s = &back.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(s.end_time_unix_nano, 50);
        assert!(s.parent_span_id.is_empty());
    }
}
