//! Bootstrap users, as Kafka's `kafka-storage format --add-scram`: `petrel format
//! --add-scram 'SCRAM-SHA-512=[name=admin,password=admin-secret]'` salts the password (PBKDF2
//! here, once) and keeps the credential in `<data dir>/bootstrap-users.json` (mode 0600, no
//! password in it). At start the node offers them to the controller, which applies them
//! once per catalogue (`Controller::bootstrap_users`): the first user exists before anyone
//! could create it, so an authorizer can be on from the first start. Main thread only.

use std::io::Write;
use std::num::NonZeroU32;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::error::StartError;
use crate::cluster::controller::ScramUpsertion;
use crate::cluster::metadata;
use crate::security::scram::{ScramMechanism, ITERATIONS_MAX, ITERATIONS_MIN};

/// The bootstrap users' file in a data directory.
pub use super::files::USERS_FILE as FILE_NAME;
/// Kafka's default iterations for `--add-scram`.
const ITERATIONS_DEFAULT: u32 = 4096;
/// A salt per credential, random, as Kafka's.
const SALT_BYTES: usize = 32;
/// A bootstrap file holds a few users; anything far larger is not one.
const FILE_BYTES_MAX: u64 = 1 << 20;

/// One `--add-scram` value: `MECHANISM=[name=NAME,password=PASSWORD(,iterations=N)]`; a
/// value may be in double quotes (to hold a comma).
pub fn parse_add_scram(spec: &str) -> Result<ScramUpsertion, String> {
    let bad = |why: &str| format!("--add-scram {spec:?}: {why}");
    let (mechanism, rest) = spec
        .split_once('=')
        .ok_or_else(|| bad("expected MECHANISM=[name=...,password=...]"))?;
    let mechanism = [ScramMechanism::Sha256, ScramMechanism::Sha512]
        .into_iter()
        .find(|m| m.name() == mechanism.trim())
        .ok_or_else(|| bad("the mechanism is SCRAM-SHA-256 or SCRAM-SHA-512"))?;
    let inner = rest
        .trim()
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .ok_or_else(|| bad("the attributes go in [...]"))?;
    let (mut name, mut password, mut iterations) = (None, None, ITERATIONS_DEFAULT);
    for (key, value) in attributes(inner).map_err(|why| bad(&why))? {
        match key.as_str() {
            "name" => name = Some(value),
            "password" => password = Some(value),
            "iterations" => {
                iterations = value
                    .parse()
                    .ok()
                    .filter(|n| (ITERATIONS_MIN..=ITERATIONS_MAX).contains(n))
                    .ok_or_else(|| {
                        bad(&format!(
                            "iterations are {ITERATIONS_MIN}..={ITERATIONS_MAX}"
                        ))
                    })?
            }
            other => return Err(bad(&format!("unknown attribute {other}"))),
        }
    }
    let name = name
        .filter(|n| !n.is_empty())
        .ok_or_else(|| bad("name=... is needed"))?;
    let password = password
        .filter(|p| !p.is_empty())
        .ok_or_else(|| bad("password=... is needed"))?;
    let mut salt = vec![0u8; SALT_BYTES];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut salt)
        .map_err(|_| bad("no randomness for a salt"))?;
    let count = NonZeroU32::new(iterations).ok_or_else(|| bad("iterations"))?;
    Ok(ScramUpsertion {
        user: name,
        mechanism: mechanism.code(),
        iterations,
        salted_password: mechanism.salted_password(password.as_bytes(), &salt, count),
        salt,
    })
}

/// `k=v,k="v,with,commas"` as pairs.
fn attributes(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let (key, after) = rest
            .split_once('=')
            .ok_or_else(|| format!("expected key=value at {rest:?}"))?;
        let (value, after) = match after.strip_prefix('"') {
            Some(quoted) => {
                let end = quoted
                    .find('"')
                    .ok_or_else(|| "an unterminated quote".to_string())?;
                let after = quoted[end + 1..].trim_start();
                let after = after.strip_prefix(',').unwrap_or(after);
                (&quoted[..end], after)
            }
            None => after.split_once(',').unwrap_or((after, "")),
        };
        pairs.push((key.trim().to_string(), value.to_string()));
        rest = after.trim_start();
    }
    Ok(pairs)
}

/// Writes `users` as `dir`'s bootstrap users (a fresh data directory, or one just
/// formatted): refused where a catalogue exists already (set users with kafka-configs
/// there) or a broker runs.
pub fn write(dir: &Path, users: &[ScramUpsertion]) -> Result<(), StartError> {
    super::files::create_data_dir(dir)?;
    let _stopped = super::bootstrap::lock_data_dir(dir)?;
    let refuse = |why: String| StartError::Identity(why);
    if dir.join(metadata::FILE_NAME).exists() || dir.join(FILE_NAME).exists() {
        return Err(refuse(format!(
            "{} already has a catalogue or bootstrap users: --add-scram is for a new data \
             directory (set users with kafka-configs --alter --entity-type users)",
            dir.display()
        )));
    }
    let path = dir.join(FILE_NAME);
    let failed = |source| StartError::DataDir {
        path: path.clone(),
        source,
    };
    let bytes = serde_json::to_vec(users).expect("credentials serialize");
    let temp = crate::storage::io::temp_path(&path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temp)
        .map_err(failed)?;
    file.write_all(&bytes).map_err(failed)?;
    file.sync_all().map_err(failed)?;
    std::fs::rename(&temp, &path).map_err(failed)?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(failed)?;
    Ok(())
}

/// `dir`'s bootstrap users, if it has any.
pub fn read(dir: &Path) -> Result<Option<Vec<ScramUpsertion>>, StartError> {
    let path = dir.join(FILE_NAME);
    let damaged =
        |why: String| StartError::Identity(format!("{} is damaged: {why}", path.display()));
    let file = match std::fs::File::open(&path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(StartError::DataDir { path, source }),
    };
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(
        &mut std::io::Read::take(file, FILE_BYTES_MAX + 1),
        &mut bytes,
    )
    .map_err(|error| damaged(error.to_string()))?;
    if bytes.len() as u64 > FILE_BYTES_MAX {
        return Err(damaged(format!("larger than {FILE_BYTES_MAX} bytes")));
    }
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|error| damaged(error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_scram_reads_as_kafka_s_and_salts_the_password() {
        let user = parse_add_scram("SCRAM-SHA-512=[name=admin,password=admin-secret]").unwrap();
        assert_eq!(user.user, "admin");
        assert_eq!(user.mechanism, ScramMechanism::Sha512.code());
        assert_eq!(user.iterations, ITERATIONS_DEFAULT);
        let salt = user.salt.clone();
        let count = NonZeroU32::new(ITERATIONS_DEFAULT).unwrap();
        assert_eq!(
            user.salted_password,
            ScramMechanism::Sha512.salted_password(b"admin-secret", &salt, count)
        );
        let quoted =
            parse_add_scram(r#"SCRAM-SHA-256=[name=bob,password="a,b=c",iterations=8192]"#)
                .unwrap();
        assert_eq!((quoted.user.as_str(), quoted.iterations), ("bob", 8192));
        for bad in [
            "SCRAM-SHA-1=[name=a,password=b]",
            "SCRAM-SHA-512=name=a,password=b",
            "SCRAM-SHA-512=[name=a]",
            "SCRAM-SHA-512=[password=b]",
            "SCRAM-SHA-512=[name=a,password=b,iterations=1]",
            "SCRAM-SHA-512=[name=a,password=b,colour=red]",
            r#"SCRAM-SHA-512=[name=a,password="b]"#,
        ] {
            assert!(parse_add_scram(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bootstrap_users_are_written_once_and_read_back() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join("data");
        let users = vec![parse_add_scram("SCRAM-SHA-256=[name=a,password=b]").unwrap()];
        assert_eq!(read(&dir).unwrap(), None);
        write(&dir, &users).unwrap();
        assert_eq!(read(&dir).unwrap(), Some(users.clone()));
        let mode = std::fs::metadata(dir.join(FILE_NAME))
            .unwrap()
            .permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
        assert!(write(&dir, &users).is_err(), "not twice");
    }
}
