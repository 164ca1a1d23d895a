//! The one report line every benchmark prints.

use std::time::Duration;

/// One line: how many `noun` succeeded in `elapsed`, the rate, p50/p99/max latency, failures.
pub(super) fn summary(noun: &str, lat: &mut [Duration], elapsed: Duration, failures: usize) -> String {
    lat.sort();
    let ok = lat.len();
    let pct =
        |p: f64| lat.get(((ok as f64 * p).ceil() as usize).saturating_sub(1)).copied().unwrap_or_default();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    format!(
        "{ok} {noun} in {:.2}s: {:.0}/s; latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; {failures} failed",
        elapsed.as_secs_f64(),
        ok as f64 / elapsed.as_secs_f64(),
        ms(pct(0.50)),
        ms(pct(0.99)),
        ms(lat.last().copied().unwrap_or_default())
    )
}
