//! The API dialects of the seed systems: adapters that translate their request and
//! response shapes onto the same engine (clients, users, codes, sessions, tokens). No
//! grant is implemented twice.

pub mod hutech;
pub mod oneaccess;
pub mod tconnect;

/// ISO-8601 UTC with milliseconds (`2025-10-02T08:16:02.876Z`).
pub fn iso8601_millis(unix_millis: i64) -> String {
    let (secs, millis) = (unix_millis.div_euclid(1000), unix_millis.rem_euclid(1000));
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Days to civil date (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z", rem / 3600, rem % 3600 / 60, rem % 60, millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso8601() {
        assert_eq!(iso8601_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601_millis(1_759_392_962_876), "2025-10-02T08:16:02.876Z");
        assert_eq!(iso8601_millis(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(iso8601_millis(-1), "1969-12-31T23:59:59.999Z");
    }
}
