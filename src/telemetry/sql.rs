//! Database statements as telemetry. sqlx reports every statement it ran as
//! a `sqlx::query` event (statement summary, rows, elapsed time); this layer
//! turns each into a `db.client.operation.duration` measurement and, when
//! traces are on, a client span under the current span, backdated to the
//! statement's start. The summary is the statement's first words (deskd's
//! SQL carries values only as bind parameters, so no value reaches a span).

use std::{
    sync::OnceLock,
    time::{Duration, SystemTime},
};

use opentelemetry::{
    KeyValue,
    trace::{SpanKind, TraceContextExt as _, Tracer as _},
};
use tracing::{
    Dispatch, Event, Level, Subscriber,
    dispatcher::WeakDispatch,
    field::{Field, Visit},
};
use tracing_subscriber::{Layer, filter::Targets, layer::Context, registry::LookupSpan};

use super::{metrics::metrics, tracer, traces_enabled};

/// The events this layer needs: sqlx's statement log.
pub fn filter() -> Targets {
    Targets::new().with_target("sqlx::query", Level::TRACE)
}

/// See the module documentation.
#[derive(Default)]
pub struct SqlLayer {
    dispatch: OnceLock<WeakDispatch>,
}

#[derive(Default)]
struct Statement {
    summary: String,
    elapsed_secs: Option<f64>,
    rows_affected: Option<u64>,
    rows_returned: Option<u64>,
}

impl Visit for Statement {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "summary" {
            self.summary = value.trim_end_matches(" …").to_string();
        }
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        if field.name() == "elapsed_secs" {
            self.elapsed_secs = Some(value);
        }
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        match field.name() {
            "rows_affected" => self.rows_affected = Some(value),
            "rows_returned" => self.rows_returned = Some(value),
            _ => {}
        }
    }
    fn record_debug(&mut self, _: &Field, _: &dyn std::fmt::Debug) {}
}

/// The statement's operation (`SELECT`, `INSERT`, …), from a fixed set so
/// the attribute stays low-cardinality.
pub fn operation(summary: &str) -> &'static str {
    let first = summary.split_whitespace().next().unwrap_or("");
    const OPS: &[&str] = &[
        "SELECT",
        "INSERT",
        "UPDATE",
        "DELETE",
        "WITH",
        "BEGIN",
        "COMMIT",
        "ROLLBACK",
        "SET",
        "SHOW",
        "LOCK",
        "CALL",
        "SAVEPOINT",
        "RELEASE",
    ];
    OPS.iter()
        .copied()
        .find(|op| op.eq_ignore_ascii_case(first))
        .unwrap_or("OTHER")
}

impl<S> Layer<S> for SqlLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_register_dispatch(&self, dispatch: &Dispatch) {
        let _ = self.dispatch.set(dispatch.downgrade());
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        if event.metadata().target() != "sqlx::query" {
            return;
        }
        let mut st = Statement::default();
        event.record(&mut st);
        let Some(secs) = st.elapsed_secs else { return };
        let op = operation(&st.summary);
        metrics().db_duration.record(
            secs,
            &[
                KeyValue::new("db.system.name", "postgresql"),
                KeyValue::new("db.operation.name", op),
            ],
        );
        if !traces_enabled() {
            return;
        }
        // The subscriber's current span (this layer's own filter sees only
        // sqlx events, so `lookup_current` would find nothing).
        let current = ctx.current_span();
        let (Some(tracer), Some(current), Some(dispatch)) =
            (tracer(), current.id(), self.dispatch.get().and_then(|d| d.upgrade()))
        else {
            return;
        };
        let Some(parent) = tracing_opentelemetry::get_otel_context(current, &dispatch) else {
            return;
        };
        if !parent.span().span_context().is_sampled() {
            return;
        }
        let end = SystemTime::now();
        let start = end.checked_sub(Duration::from_secs_f64(secs.max(0.0))).unwrap_or(end);
        let mut attrs = vec![
            KeyValue::new("db.system.name", "postgresql"),
            KeyValue::new("db.operation.name", op),
            KeyValue::new("db.query.summary", st.summary),
        ];
        if let Some(n) = st.rows_returned.filter(|n| *n > 0).or(st.rows_affected) {
            attrs.push(KeyValue::new("db.response.returned_rows", n as i64));
        }
        let span = tracer
            .span_builder(op)
            .with_kind(SpanKind::Client)
            .with_start_time(start)
            .with_attributes(attrs)
            .start_with_context(&tracer, &parent);
        let cx = opentelemetry::Context::current_with_span(span);
        cx.span().end_with_timestamp(end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_are_a_fixed_set() {
        assert_eq!(operation("select id, title from"), "SELECT");
        assert_eq!(operation("INSERT INTO tickets (tenant_id,"), "INSERT");
        assert_eq!(operation("vacuum tickets"), "OTHER");
        assert_eq!(operation(""), "OTHER");
    }
}
