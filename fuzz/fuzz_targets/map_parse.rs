//! The map parser: `mapfile::parse` on one map file.
//! The property checked is in `cutover::fuzzing::map_parse`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| cutover::fuzzing::map_parse(data));
