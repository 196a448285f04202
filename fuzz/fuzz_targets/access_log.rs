//! Nginx's access-log lines as the agent receives them: `accesslog::parse` and the counters.
//! The property checked is in `cutover::fuzzing::access_log`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| cutover::fuzzing::access_log(data));
