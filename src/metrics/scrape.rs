//! Values read only when Prometheus scrapes: the capture writer's counters, the side channel's
//! size, open connections and resident memory; and Prometheus's own text format.

use crate::capture::CaptureWriter;
use crate::progress::Hub;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;
use std::sync::{Arc, OnceLock};

type Reader = Box<dyn Fn() -> u64 + Send + Sync>;

/// Where the scraped-only values come from; each is set once, when its owner starts.
#[derive(Default)]
pub(super) struct Sources {
    pub capture: OnceLock<CaptureWriter>,
    pub hub: OnceLock<Arc<Hub>>,
    pub connections: OnceLock<Reader>,
    /// Set when the trace exporter runs: its counters are scraped too.
    pub traces: OnceLock<()>,
}

impl std::fmt::Debug for Sources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sources").finish_non_exhaustive()
    }
}

fn gauge(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    v: u64,
) -> std::fmt::Result {
    let g = ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX));
    g.encode(e.encode_descriptor(name, help, unit, g.metric_type())?)
}

fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> std::fmt::Result {
    let c = ConstCounter::new(v);
    c.encode(e.encode_descriptor(name, help, None, c.metric_type())?)
}

impl Collector for Sources {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        if let Some(w) = self.capture.get() {
            let s = w.stats();
            let bytes = Some(&Unit::Bytes);
            gauge(
                &mut e,
                "aloud_capture_queued",
                "Estimated bytes of records waiting for the capture writer",
                bytes,
                s.queued_bytes as u64,
            )?;
            gauge(
                &mut e,
                "aloud_capture_spill",
                "Bytes in capture spill segments now",
                bytes,
                s.spill_bytes,
            )?;
            for (name, help, v) in [
                (
                    "aloud_capture_written",
                    "Capture records committed to the database from the queue",
                    s.written,
                ),
                (
                    "aloud_capture_spilled",
                    "Capture records written to a spill segment (the database was behind or down)",
                    s.spilled,
                ),
                (
                    "aloud_capture_replayed",
                    "Capture records committed to the database from spill segments",
                    s.replayed,
                ),
                (
                    "aloud_capture_dropped",
                    "Capture records lost (spill at its cap, a spill write failed, unreadable line)",
                    s.dropped,
                ),
            ] {
                counter(&mut e, name, help, v)?;
            }
        }
        if self.traces.get().is_some() {
            let t = crate::telemetry::stats();
            counter(
                &mut e,
                "aloud_trace_spans_exported",
                "Spans the OTLP collector accepted",
                t.exported,
            )?;
            counter(
                &mut e,
                "aloud_trace_spans_dropped",
                "Spans lost: the export queue was full, or the collector failed, refused or timed out",
                t.dropped,
            )?;
        }
        if let Some(hub) = self.hub.get() {
            let s = hub.snapshot();
            gauge(
                &mut e,
                "aloud_side_channel_subscribers",
                "Open side-channel subscriber streams",
                None,
                s.subscribers as u64,
            )?;
            gauge(
                &mut e,
                "aloud_side_channel_requests",
                "Request ids the side channel holds: in flight, finished and retained, or awaited",
                None,
                s.requests as u64,
            )?;
            if let Some(link) = s.cluster {
                gauge(
                    &mut e,
                    "aloud_cluster_up",
                    "1 while the side channel's cluster link reaches Postgres, else 0",
                    None,
                    u64::from(link.up),
                )?;
                counter(
                    &mut e,
                    "aloud_cluster_dropped",
                    "Side-channel messages for other replicas dropped (the link's queue was full)",
                    link.dropped,
                )?;
                counter(
                    &mut e,
                    "aloud_cluster_sent_messages",
                    "Side-channel NOTIFY payloads this replica sent to the others",
                    link.sent,
                )?;
                counter(
                    &mut e,
                    "aloud_cluster_received_messages",
                    "Side-channel messages that arrived from other replicas (one per event, however many payloads carried it)",
                    link.received,
                )?;
            }
        }
        if let Some(open) = self.connections.get() {
            gauge(
                &mut e,
                "aloud_open_connections",
                "Open client connections on the proxy's port",
                None,
                open(),
            )?;
        }
        if let Some(rss) = resident_bytes() {
            gauge(
                &mut e,
                "process_resident_memory",
                "Resident memory size of the aloud process",
                Some(&Unit::Bytes),
                rss,
            )?;
        }
        Ok(())
    }
}

/// Resident memory from `/proc/self/status` (`VmRSS`, in kB); `None` off Linux.
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_vm_rss(&status)
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line
        .trim_start_matches("VmRSS:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// Prometheus's text format (0.0.4) from OpenMetrics text, for scrapers that do not ask for
/// OpenMetrics (`curl`, `promtool check metrics`, older agents). Written by hand because
/// prometheus-client encodes only OpenMetrics, and the difference is small and mechanical: a
/// counter family is named with its `_total` suffix, and `# UNIT` and `# EOF` do not exist.
pub fn prometheus_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut help: Option<&str> = None;
    for line in openmetrics.lines() {
        if line.starts_with("# HELP ") {
            if let Some(h) = help.replace(line) {
                out.push_str(h);
                out.push('\n');
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.rsplit_once(' ').unwrap_or((rest, ""));
            let rename = kind == "counter";
            if let Some(h) = help.take() {
                match h.strip_prefix("# HELP ").and_then(|r| r.split_once(' ')) {
                    Some((n, text)) if rename => {
                        out.push_str(&format!("# HELP {n}_total {text}\n"));
                    }
                    _ => {
                        out.push_str(h);
                        out.push('\n');
                    }
                }
            }
            let kind = if kind == "unknown" { "untyped" } else { kind };
            let suffix = if rename { "_total" } else { "" };
            out.push_str(&format!("# TYPE {name}{suffix} {kind}\n"));
            continue;
        }
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    if let Some(h) = help {
        out.push_str(h);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_take_their_total_name_and_openmetrics_only_lines_go() {
        let om = "# HELP aloud_requests Proxied requests.\n# TYPE aloud_requests counter\n\
                  aloud_requests_total{route=\"a\"} 3\n\
                  # HELP aloud_overhead_seconds Own time.\n# TYPE aloud_overhead_seconds histogram\n\
                  # UNIT aloud_overhead_seconds seconds\naloud_overhead_seconds_sum 0.1\n# EOF\n";
        assert_eq!(
            prometheus_text(om),
            "# HELP aloud_requests_total Proxied requests.\n# TYPE aloud_requests_total counter\n\
             aloud_requests_total{route=\"a\"} 3\n\
             # HELP aloud_overhead_seconds Own time.\n# TYPE aloud_overhead_seconds histogram\n\
             aloud_overhead_seconds_sum 0.1\n"
        );
    }

    #[test]
    fn resident_memory_is_read_in_bytes() {
        let status = "Name:\taloud\nVmRSS:\t   12345 kB\nThreads:\t3\n";
        assert_eq!(parse_vm_rss(status), Some(12345 * 1024));
        assert_eq!(parse_vm_rss("Name: x\n"), None);
        #[cfg(target_os = "linux")]
        assert!(resident_bytes().is_some_and(|b| b > 0));
    }
}
