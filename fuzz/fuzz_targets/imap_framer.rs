//! Any byte stream a server sends: the framer reads responses off it within its limits (one
//! line, one literal, one response), or fails with an error, and never holds more than them.
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use tenantry_mail::framer::{read_response, Limits};

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    // Small limits, so inputs of a few KB reach every refusal.
    let limits = Limits {
        max_line: 256,
        max_literal: 1024,
        max_response: 2048,
        idle: Duration::from_secs(5),
        deadline: Duration::from_secs(5),
    };
    runtime().block_on(async {
        let mut io = data;
        loop {
            let deadline = tokio::time::Instant::now() + limits.deadline;
            let Ok(framed) = read_response(&mut io, &limits, deadline).await else {
                break;
            };
            let held = framed.text.len() + framed.literals.iter().map(Vec::len).sum::<usize>();
            assert!(held as u64 <= limits.max_response + 2, "held {held} bytes");
            let _ = tenantry_mail::protocol::parse_framed(framed);
        }
    });
});
