//! Run ids: letters, digits, `.`, `_`, `-`; at most 64 characters. Generated ids are
//! `run-YYYYMMDD-HHMMSS-XXXXXXXX` (UTC, 8 random hex digits: two submits of one spec in
//! the same second must not share a run).

use crate::error::{Error, Result};

/// Checks a run id given by a user (`origin` names where: `--run-id`, `$LABELGEN_RUN_ID`).
pub fn check(id: &str, origin: &str) -> Result<()> {
    if id.is_empty() || id.len() > 64 || !id.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) || id.starts_with('.') {
        return Err(Error::Invalid {
            origin: origin.into(),
            key: "run id".into(),
            message: format!("expected 1 to 64 characters of letters, digits, '.', '_' or '-' (not starting with '.'), found {id:?}"),
        });
    }
    Ok(())
}

/// The same rule as a clap value parser, for run ids given on a command line.
pub fn parse_arg(id: &str) -> std::result::Result<String, String> {
    check(id, "run id").map(|()| id.to_string()).map_err(|e| match e {
        Error::Invalid { message, .. } => message,
        other => other.to_string(),
    })
}

/// A new run id, `run-YYYYMMDD-HHMMSS-XXXXXXXX`.
pub fn generate() -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = now.as_secs();
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let t = secs % 86_400;
    let rand = rand::random::<u32>();
    format!("run-{y:04}{m:02}{d:02}-{:02}{:02}{:02}-{rand:08x}", t / 3600, t / 60 % 60, t % 60)
}

/// The default run id of a static run (`worker run-shard`): the same for every task given
/// the same spec digest, so tasks agree without being told.
pub fn static_run_id(spec_digest: &str) -> String {
    format!("static-{}", &spec_digest[..spec_digest.len().min(12)])
}

/// Given or generated: a given id is checked (`origin` names the flag).
pub fn pick(given: Option<String>, origin: &str) -> Result<String> {
    match given {
        Some(id) => {
            check(&id, origin)?;
            Ok(id)
        }
        None => Ok(generate()),
    }
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
        check(&id, "--run-id").unwrap();
        assert_eq!(id.len(), "run-YYYYMMDD-HHMMSS-XXXXXXXX".len(), "{id}");
        assert_ne!(id, generate(), "ids of the same second differ");
        assert!(check("a{b}", "--run-id").is_err() && check("", "--run-id").is_err() && check("x:y", "--run-id").is_err());
        let e = check(".x", "--run-id").unwrap_err().to_string();
        assert!(e.contains("--run-id") && e.contains("\".x\""), "{e}");
        check(&static_run_id("0123456789abcdef0123"), "--run-id").unwrap();
        assert_eq!(static_run_id("0123456789abcdef0123"), "static-0123456789ab");
    }
}
