//! Micro-benchmark of the SOAP layer alone: decode (XML tree, envelope checks, typed request) and
//! encode, for the two captured .NET request bodies bench/run.sh uses. No network, no runtime: the
//! CPU cost per call of the part pfgate adds on top of hyper and rustls.
//!
//! Run: `cargo run --release --example bench-decode` (prints ns per call, median of 5 rounds).
//! On a noisy machine, count instructions instead of time:
//! `BENCH_N=2000 valgrind --tool=cachegrind --cache-sim=no target/release/examples/bench-decode`.

use std::time::Instant;

use pfgate::pfwssdk::soap::envelope::{decode_request, encode_response, read_head};
use pfgate::pfwssdk::soap::xml::XmlLimits;

fn main() {
    for (op, body) in [
        (
            "TestSecurity",
            include_bytes!("soap/TestSecurity.xml").as_slice(),
        ),
        (
            "PfAuthUser_5",
            include_bytes!("soap/PfAuthUser_5.xml").as_slice(),
        ),
    ] {
        let action = format!("\"http://www.phonefactor.com/PfWsSdk/{op}\"");
        let head = match read_head(Some("text/xml; charset=utf-8"), Some(&action)) {
            Ok(h) => h,
            Err(e) => panic!("{op}: {e}"),
        };
        // BENCH_N: iterations per round (e.g. a few thousand under valgrind, which counts instructions).
        let n: u32 = std::env::var("BENCH_N")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(100_000);
        let mut rounds = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            for _ in 0..n {
                let call = decode_request(&head, std::hint::black_box(body), XmlLimits::default());
                std::hint::black_box(call.is_ok());
            }
            rounds.push(t.elapsed().as_nanos() / u128::from(n));
        }
        rounds.sort_unstable();
        let decode_ns = rounds[2];
        let call = match decode_request(&head, body, XmlLimits::default()) {
            Ok(c) => c,
            Err(f) => panic!("{op}: {}", f.message),
        };
        let response =
            pfgate::pfwssdk::Response::status(call.request.operation(), true, Default::default());
        let t = Instant::now();
        for _ in 0..n {
            std::hint::black_box(encode_response(
                call.version,
                std::hint::black_box(&response),
            ));
        }
        let encode_ns = t.elapsed().as_nanos() / u128::from(n);
        println!(
            "{op:14} {:4} bytes  decode {decode_ns:6} ns  encode {encode_ns:5} ns",
            body.len()
        );
    }
}
