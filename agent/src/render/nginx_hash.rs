//! Sizes of Nginx's map hashes (`map_hash_max_size`, `map_hash_bucket_size`), computed from
//! the number and length of the keys, so a map of any size loads fast and without the
//! "could not build optimal map_hash" warning.
//!
//! How Nginx 1.22 builds a map's hash (`ngx_hash_init`): each key takes
//! `8 + align8(len + 2)` bytes in its bucket, a bucket holds `bucket_size - 8` bytes, and
//! Nginx tries table sizes from a start value up to `max_size`, taking the first size at
//! which no bucket overflows (each try costs one pass over the keys). The start is
//! `keys / ((bucket_size - 8) / 16)`, or `max_size - 1000` when `max_size > 10000` and
//! `max_size / keys < 100`. If no size fits it warns and ignores the bucket size.
//!
//! The sizes chosen here: buckets with room for [`KEYS_PER_BUCKET`] keys of the longest
//! length (Nginx allocates buckets by what they hold, not by `bucket_size`, so room costs
//! nothing), and for more than [`SMALL_MAP_KEYS`] keys a `max_size` of about twice the key
//! count and at least 10240, so that Nginx starts its search at a load of about one key per
//! two buckets, where (with room for 8) a table fits at the first or second try.
//!
//! The same sizing idea for the Lua runtime mode's `lua_shared_dict` ([`lua_dict_size`]):
//! the size follows the entry count with headroom and moves in powers of two, so that a
//! few more routes keep the size (a reload keeps the dict only when its size is the same).

use serde::Serialize;

/// Keys of the longest length one bucket has room for: 8.
pub const KEYS_PER_BUCKET: usize = 8;
/// Up to this many keys Nginx's default `map_hash_max_size` ([`DEFAULT_MAX_SIZE`]) is
/// kept: the search from Nginx's own start value is short for so few keys.
pub const SMALL_MAP_KEYS: usize = 1024;
/// Nginx's default `map_hash_max_size`.
pub const DEFAULT_MAX_SIZE: usize = 2048;
/// CPU cache line Nginx aligns the bucket size to (x86-64, arm64): 64 bytes.
pub const CACHELINE: usize = 64;
/// Largest bucket size Nginx accepts: 65536 less one cache line.
pub const MAX_BUCKET_SIZE: usize = 65536 - CACHELINE;

/// Bytes one dict entry is given: a shared-dict node (about 80 bytes with its key and a
/// short value) rounded up to its slab class, twice over for headroom: 512.
pub const LUA_DICT_BYTES_PER_ENTRY: usize = 512;
/// Smallest dict: 1 MiB (twice the minimum Nginx accepts, room for a few thousand keys).
pub const LUA_DICT_MIN_MIB: usize = 1;

/// The `lua_shared_dict` size for `entries` keys, as Nginx writes it (`4m`): entries times
/// [`LUA_DICT_BYTES_PER_ENTRY`], rounded up to a power of two of MiB, at least
/// [`LUA_DICT_MIN_MIB`].
pub fn lua_dict_size(entries: usize) -> String {
    let mib = (entries.saturating_mul(LUA_DICT_BYTES_PER_ENTRY)).div_ceil(1 << 20);
    format!("{}m", mib.max(LUA_DICT_MIN_MIB).next_power_of_two())
}

/// The two map hash directives for the `http` block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MapHashSizes {
    /// `map_hash_max_size`: most buckets a map's hash table may have.
    pub map_hash_max_size: usize,
    /// `map_hash_bucket_size`: bytes of one bucket, a multiple of [`CACHELINE`].
    pub map_hash_bucket_size: usize,
}

/// Bytes a key of `len` bytes takes in a bucket.
pub fn element_size(len: usize) -> usize {
    8 + (len + 2).div_ceil(8) * 8
}

/// Sizes for maps of at most `keys` keys whose longest key is `longest` bytes.
pub fn map_hash_sizes(keys: usize, longest: usize) -> MapHashSizes {
    let bucket =
        (8 + KEYS_PER_BUCKET * element_size(longest.max(1))).div_ceil(CACHELINE) * CACHELINE;
    let max_size = if keys <= SMALL_MAP_KEYS {
        DEFAULT_MAX_SIZE
    } else {
        (2 * keys).div_ceil(1024).max(10) * 1024
    };
    MapHashSizes {
        map_hash_max_size: max_size,
        map_hash_bucket_size: bucket.min(MAX_BUCKET_SIZE),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Nginx's key hash (`ngx_hash_key_lc`): h = h * 31 + lower(byte), 64-bit.
    fn key_hash(key: &str) -> u64 {
        key.bytes().fold(0u64, |h, b| {
            h.wrapping_mul(31)
                .wrapping_add(u64::from(b.to_ascii_lowercase()))
        })
    }

    /// Nginx's search for a table size (`ngx_hash_init`): the number of sizes tried, or
    /// `None` where Nginx would warn that it could not build an optimal hash.
    fn nginx_tries(keys: &[String], s: MapHashSizes) -> Option<usize> {
        let bucket = s.map_hash_bucket_size - 8;
        let n = keys.len();
        let max = s.map_hash_max_size;
        let mut start = (n / (bucket / 16)).max(1);
        if max > 10000 && n > 0 && max / n < 100 {
            start = max - 1000;
        }
        let hashes: Vec<(u64, usize)> = keys
            .iter()
            .map(|k| (key_hash(k), element_size(k.len())))
            .collect();
        let mut test = vec![0usize; max];
        'size: for size in start..=max {
            test[..size].fill(0);
            for (h, e) in &hashes {
                let slot = (*h % size as u64) as usize;
                test[slot] += e;
                if test[slot] > bucket {
                    continue 'size;
                }
            }
            return Some(size - start + 1);
        }
        None
    }

    fn hosts(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("h{i}.example.test")).collect()
    }

    #[test]
    fn sizes_grow_with_the_keys() {
        let small = map_hash_sizes(2, 16);
        assert_eq!(small.map_hash_max_size, DEFAULT_MAX_SIZE);
        assert_eq!(small.map_hash_bucket_size % CACHELINE, 0);
        assert_eq!(map_hash_sizes(100_000, 20).map_hash_max_size, 200_704);
        assert_eq!(map_hash_sizes(2000, 20).map_hash_max_size, 10_240);
        // The longest key allowed (1024 bytes) still fits a bucket Nginx accepts.
        let long = map_hash_sizes(10, 1024);
        assert!(long.map_hash_bucket_size <= MAX_BUCKET_SIZE);
        assert!(long.map_hash_bucket_size >= element_size(1024) + 8);
    }

    #[test]
    fn nginx_builds_the_hash_at_once_for_any_count() {
        for n in [1, 2, 50, 1024, 1025, 5000, 20_000, 100_000] {
            let keys = hosts(n);
            let longest = keys.iter().map(String::len).max().unwrap();
            let sizes = map_hash_sizes(n, longest);
            let tries = nginx_tries(&keys, sizes).unwrap_or_else(|| panic!("{n} keys: no fit"));
            if n > SMALL_MAP_KEYS {
                assert!(tries <= 3, "{n} keys: {tries} sizes tried");
            }
        }
    }

    #[test]
    fn defaults_are_not_enough_for_large_maps() {
        // What the computed sizes avoid: Nginx's defaults on 100k routes warn.
        let keys = hosts(100_000);
        let defaults = MapHashSizes {
            map_hash_max_size: DEFAULT_MAX_SIZE,
            map_hash_bucket_size: CACHELINE,
        };
        assert_eq!(nginx_tries(&keys, defaults), None);
    }

    #[test]
    fn lua_dict_sizes_move_in_powers_of_two() {
        assert_eq!(lua_dict_size(0), "1m");
        assert_eq!(lua_dict_size(2000), "1m");
        assert_eq!(lua_dict_size(2100), "2m");
        assert_eq!(lua_dict_size(100_000), "64m");
        assert_eq!(lua_dict_size(100_500), "64m");
    }
}
