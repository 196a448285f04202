//! The HAProxy reply parsers: every `proxy::haproxy::reply` parser on one reply.
//! The property checked is in `cutover::fuzzing::haproxy_reply`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| cutover::fuzzing::haproxy_reply(data));
