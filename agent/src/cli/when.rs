//! Points in time on the command line (`history --since` / `--until`): an RFC 3339 time
//! (`2026-03-01T12:00:00Z`, `2026-03-01T13:00:00.5+01:00`) or an age counted back from now
//! (`90s`, `15m`, `1h`, `7d`), as Unix time in milliseconds.

use std::time::{SystemTime, UNIX_EPOCH};

/// Longest age accepted: 100 years, in seconds.
const MAX_AGE_S: u64 = 100 * 365 * 86_400;

/// `s` as Unix time in milliseconds; an error says what `s` is not.
pub fn parse_ms(s: &str) -> Result<u64, String> {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    parse_at(s, now_ms)
}

/// [`parse_ms`] with the present given.
fn parse_at(s: &str, now_ms: u64) -> Result<u64, String> {
    let bad = || {
        format!(
            "{s:?} is neither an RFC 3339 time (2026-03-01T12:00:00Z) nor an age (90s, 15m, \
             1h, 7d)"
        )
    };
    if let Some(age_s) = age(s) {
        if age_s > MAX_AGE_S {
            return Err(format!("{s:?} is more than 100 years ago"));
        }
        return Ok(now_ms.saturating_sub(age_s * 1000));
    }
    rfc3339(s).ok_or_else(bad)
}

/// `<n><unit>` with unit s, m, h or d: seconds.
fn age(s: &str) -> Option<u64> {
    let unit = match s.chars().last()? {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return None,
    };
    let n = &s[..s.len() - 1];
    if n.is_empty() || n.len() > 12 || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse::<u64>().ok()?.checked_mul(unit)
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` as Unix milliseconds (years 1970 to 9999).
fn rfc3339(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() < 20 || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let num = |from: usize, len: usize| -> Option<i64> {
        let part = s.get(from..from + len)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let seps = [(4, b'-'), (7, b'-'), (13, b':'), (16, b':')];
    if seps.iter().any(|&(i, c)| b[i] != c) {
        return None;
    }
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (hour, minute, second) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days_in = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1970..=9999).contains(&year)
        || !(1..=12).contains(&month)
        || day < 1
        || day > days_in[month as usize - 1]
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut rest = &s[19..];
    let mut ms = 0;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let first3 = format!("{:0<3}", &frac[..digits.min(3)]);
        ms = first3.parse::<i64>().ok()?;
        rest = &frac[digits..];
    }
    let offset_s = match rest.as_bytes() {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let digits = [*h1, *h2, *m1, *m2];
            if !digits.iter().all(u8::is_ascii_digit) {
                return None;
            }
            let d = |i: usize| i64::from(digits[i] - b'0');
            let (h, m) = (d(0) * 10 + d(1), d(2) * 10 + d(3));
            if h > 23 || m > 59 {
                return None;
            }
            let sign = if *sign == b'-' { -1 } else { 1 };
            sign * (h * 3600 + m * 60)
        }
        _ => return None,
    };
    let days = super::civil::to_days(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_s;
    u64::try_from(secs * 1000 + ms).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_times_and_ages() {
        let now = 1_800_000_000_000;
        assert_eq!(parse_at("1970-01-01T00:00:00Z", now), Ok(0));
        assert_eq!(parse_at("2026-03-01T12:00:00Z", now), Ok(1_772_366_400_000));
        assert_eq!(
            parse_at("2026-03-01T13:00:00.25+01:00", now),
            Ok(1_772_366_400_250)
        );
        assert_eq!(
            parse_at("2024-02-29T00:00:00-00:30", now),
            Ok(1_709_166_600_000)
        );
        assert_eq!(parse_at("90s", now), Ok(now - 90_000));
        assert_eq!(parse_at("15m", now), Ok(now - 900_000));
        assert_eq!(parse_at("1h", now), Ok(now - 3_600_000));
        assert_eq!(parse_at("7d", now), Ok(now - 7 * 86_400_000));
        for bad in [
            "",
            "h",
            "1w",
            "-1h",
            "1.5h",
            "2026-02-30T00:00:00Z",
            "2026-03-01T12:00:00",
            "2026-03-01 12:00",
            "2026-03-01T24:00:00Z",
            "2026-03-01T12:00:00+1:00",
            "yesterday",
        ] {
            let e = parse_at(bad, now).unwrap_err();
            assert!(e.contains("RFC 3339"), "{bad}: {e}");
        }
        assert!(parse_at("99999999d", now)
            .unwrap_err()
            .contains("100 years"));
    }
}
