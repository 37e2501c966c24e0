//! Run ids: letters, digits, `.`, `_`, `-`; at most 64 characters. Generated ids are
//! `run-YYYYMMDD-HHMMSS-XXXX` (UTC, 4 random hex digits).

use anyhow::bail;

pub fn check(id: &str) -> anyhow::Result<()> {
    if id.is_empty() || id.len() > 64 || !id.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) || id.starts_with('.') {
        bail!("--run-id: expected 1 to 64 characters of letters, digits, '.', '_' or '-' (not starting with '.'), found {id:?}");
    }
    Ok(())
}

pub fn generate() -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = now.as_secs();
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let t = secs % 86_400;
    let rand = shared::mix64(now.as_nanos() as u64 ^ ((std::process::id() as u64) << 32)) & 0xffff;
    format!("run-{y:04}{m:02}{d:02}-{:02}{:02}{:02}-{rand:04x}", t / 3600, t / 60 % 60, t % 60)
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_ids() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_454), (2026, 1, 1));
        let id = generate();
        check(&id).unwrap();
        assert!(check("a{b}").is_err() && check("").is_err() && check("x:y").is_err());
    }
}
