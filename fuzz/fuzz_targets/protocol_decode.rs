//! The control protocol decoder: `protocol::decode` on one request line.
//! The property checked is in `cutover::fuzzing::protocol_decode`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| cutover::fuzzing::protocol_decode(data));
