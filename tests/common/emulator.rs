//! Plumbing every API emulator shares: queued faults, the busiest window of recorded
//! requests, and form bodies.

#![allow(dead_code)]

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// One request an emulator answered.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: String,
    pub authorization: Option<String>,
    /// The JSON body (form bodies as an object; `null` when there was none).
    pub body: serde_json::Value,
    pub status: u16,
    pub at: Instant,
}

/// Faults queued for requests whose path starts with a prefix ("" = any), each good for
/// a number of requests.
pub type Faults<F> = VecDeque<(String, F, usize)>;

/// Takes the first fault queued for this path, if any.
pub fn take_fault<F: Clone>(faults: &mut Faults<F>, path: &str) -> Option<F> {
    let i = faults.iter().position(|(p, _, n)| *n > 0 && path.starts_with(p.as_str()))?;
    let fault = faults[i].1.clone();
    faults[i].2 -= 1;
    if faults[i].2 == 0 {
        faults.remove(i);
    }
    Some(fault)
}

/// Ends the request by closing its connection without a byte of answer, the way a
/// reset socket or a crashed proxy does. The emulator's connection task unwinds (without
/// the panic hook, so nothing is printed) and drops the socket; the server goes on.
pub fn drop_connection() -> ! {
    std::panic::resume_unwind(Box::new("emulated connection reset"))
}

/// The most requests seen inside any sliding window (times in arrival order).
pub fn max_in_window(times: impl IntoIterator<Item = Instant>, window: Duration) -> usize {
    let times: Vec<Instant> = times.into_iter().collect();
    let (mut best, mut lo) = (0, 0);
    for hi in 0..times.len() {
        while times[hi].duration_since(times[lo]) >= window {
            lo += 1;
        }
        best = best.max(hi - lo + 1);
    }
    best
}

/// An `application/x-www-form-urlencoded` body (or query string) as pairs.
pub fn form_decode(s: &str) -> BTreeMap<String, String> {
    let decode = |v: &str| {
        let v = v.replace('+', " ");
        let b = v.as_bytes();
        let (mut out, mut i) = (Vec::new(), 0);
        while i < b.len() {
            if b[i] == b'%' && i + 2 < b.len() {
                if let Ok(x) = u8::from_str_radix(&v[i + 1..i + 3], 16) {
                    out.push(x);
                    i += 3;
                    continue;
                }
            }
            out.push(b[i]);
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}
