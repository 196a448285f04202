//! Calendar dates and day counts, both ways: for the times the command line prints and
//! reads (`history --since`), and the build date agent/build.rs records (which includes
//! this file).

/// The civil date `(year, month, day)` (proleptic Gregorian) of a count of days since
/// 1970-01-01; Howard Hinnant's `civil_from_days`.
pub fn from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Days from 1970-01-01 to the civil date `(year, month, day)` (proleptic Gregorian), the
/// inverse of [`from_days`]; Howard Hinnant's `days_from_civil`.
pub fn to_days(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_and_dates_round_trip() {
        assert_eq!(from_days(0), (1970, 1, 1));
        assert_eq!(to_days(2000, 3, 1), 11_017);
        for days in (-800_000..800_000).step_by(97) {
            let (y, m, d) = from_days(days);
            assert_eq!(to_days(y, m, d), days, "{y}-{m}-{d}");
        }
    }
}
