//! `GET /metrics`: counters in Prometheus' text format. Only totals of the host, never an
//! account's objects.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use weft_controller::Controller;

use crate::TAG_META;

/// Metrics
///
/// Instances by state, and what guests made the platform do (DNS questions, console logs
/// rotated, port announcement lines taken and dropped), in Prometheus' text format. Needs no
/// token.
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = TAG_META,
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain"))
)]
pub async fn serve(State(ctl): State<Arc<Controller>>) -> impl IntoResponse {
    let mut out = String::new();
    let _ = writeln!(out, "# HELP weft_instances Instances by state.");
    let _ = writeln!(out, "# TYPE weft_instances gauge");
    for (state, count) in ctl.count_by_state().await.unwrap_or_default() {
        let _ = writeln!(out, "weft_instances{{state=\"{state}\"}} {count}");
    }

    let rotations = ctl.metrics.console_rotations.load(Ordering::Relaxed);
    let _ = writeln!(
        out,
        "# HELP weft_console_rotations_total Console logs cut to bound them."
    );
    let _ = writeln!(out, "# TYPE weft_console_rotations_total counter");
    let _ = writeln!(out, "weft_console_rotations_total {rotations}");

    let agent = &ctl.metrics.agent;
    let _ = writeln!(
        out,
        "# HELP weft_agent_lines_total Port announcement lines from guests by outcome."
    );
    let _ = writeln!(out, "# TYPE weft_agent_lines_total counter");
    for (outcome, count) in agent.lines() {
        let _ = writeln!(
            out,
            "weft_agent_lines_total{{outcome=\"{outcome}\"}} {count}"
        );
    }
    let bytes = agent.bytes.load(Ordering::Relaxed);
    let _ = writeln!(
        out,
        "# HELP weft_agent_bytes_total Bytes read from guests' agent channels."
    );
    let _ = writeln!(out, "# TYPE weft_agent_bytes_total counter");
    let _ = writeln!(out, "weft_agent_bytes_total {bytes}");

    if let Some(dns) = ctl.metrics.dns.get() {
        let _ = writeln!(
            out,
            "# HELP weft_dns_queries_total DNS questions by outcome."
        );
        let _ = writeln!(out, "# TYPE weft_dns_queries_total counter");
        for (outcome, count) in dns.snapshot() {
            let _ = writeln!(
                out,
                "weft_dns_queries_total{{outcome=\"{outcome}\"}} {count}"
            );
        }
    }
    if let Some(proxy) = ctl.metrics.proxy.get() {
        let _ = writeln!(
            out,
            "# HELP weft_proxy_events_total What clients made the ingress proxy do."
        );
        let _ = writeln!(out, "# TYPE weft_proxy_events_total counter");
        for (event, count) in proxy.snapshot() {
            let _ = writeln!(out, "weft_proxy_events_total{{event=\"{event}\"}} {count}");
        }
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}
