//! The deployment's secrets: the secret key (the HS256 key the tutorials'
//! resource servers share, and what seals private signing keys unless a
//! master key is set), where it comes from, and refusing the ones that
//! protect nothing (too short, or copied from a tutorial).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use secrecy::{ExposeSecret, SecretString};

use super::signing::Sealer;

/// The secret key and the optional master key, resolved once.
#[derive(Clone)]
pub struct Secrets {
    secret: std::sync::Arc<SecretString>,
    master_key: Option<std::sync::Arc<SecretString>>,
}

impl Secrets {
    /// Holds the secret key and, when configured, the master key.
    pub fn new(secret: SecretString, master_key: Option<SecretString>) -> Self {
        Secrets { secret: secret.into(), master_key: master_key.map(Into::into) }
    }

    /// The secret key (the HS256 key made of it signs with its UTF-8 bytes).
    pub fn secret(&self) -> &str {
        self.secret.expose_secret()
    }

    /// What seals private signing keys: the master key when configured (so
    /// holders of the HS256 secret, e.g. resource servers, cannot unseal
    /// them), else the secret key.
    pub fn sealer(&self) -> Sealer {
        Sealer::new(self.master_key.as_deref().unwrap_or(&self.secret).expose_secret())
    }
}

/// Finds the secret key of a database: the environment, a file, or the file
/// beside an SQLite database (generated there on a server's first start),
/// and logs where it came from (never the value).
///
/// # Errors
/// A refused secret; or none found where none may be generated.
pub fn resolve(
    database_url: &str,
    from_env: Option<&SecretString>,
    file: Option<&Path>,
    may_generate: bool,
) -> anyhow::Result<SecretString> {
    let beside = crate::store::sqlite::file_of(database_url).map(|db| path_beside(&db));
    if from_env.is_none() && file.is_none() {
        match &beside {
            None if database_url.starts_with("sqlite:") && may_generate => {}
            None => bail!(
                "this database has no file to keep a secret beside: set PORTCULLIS_SECRET_KEY or --secret-key-file \
                 (generate one with `openssl rand -hex 32`)"
            ),
            Some(path) if !may_generate && !path.exists() => bail!(
                "no secret key: set PORTCULLIS_SECRET_KEY or --secret-key-file, or start the server once to generate {}",
                path.display()
            ),
            Some(_) => {}
        }
    }
    let (secret, origin) = find(from_env.map(ExposeSecret::expose_secret), file, beside.as_deref())?;
    match origin {
        Origin::Environment => tracing::info!("signing secret from PORTCULLIS_SECRET_KEY"),
        Origin::File(path) => tracing::info!(file = %path.display(), "signing secret from file"),
        Origin::Generated(path) => tracing::warn!(
            file = %path.display(),
            "no secret key given: generated one and saved it (mode 0600); keep this file with the database"
        ),
        Origin::Ephemeral => {
            tracing::warn!(
                "no secret key given: generated one for this in-memory database; tokens die with the process"
            )
        }
    }
    Ok(secret)
}

/// Checks a master key (from `PORTCULLIS_MASTER_KEY` or the file named by
/// `PORTCULLIS_MASTER_KEY_FILE`) by the secret key's rules.
///
/// # Errors
/// An unreadable file or a weak key.
pub fn master_key(value: Option<&SecretString>, file: Option<&Path>) -> anyhow::Result<Option<SecretString>> {
    let value = match (value, file) {
        (Some(key), _) => key.expose_secret().trim().to_owned(),
        (None, Some(path)) => read_secret_file(path).context("master key")?,
        (None, None) => return Ok(None),
    };
    if let Some(why) = weakness(&value) {
        bail!("master key refused: {}", why.replace("secret key", "master key"));
    }
    Ok(Some(SecretString::from(value)))
}

/// How to make a good secret, quoted in every refusal.
const HOW_TO: &str = "generate one with `openssl rand -hex 32` and set PORTCULLIS_SECRET_KEY (or --secret-key-file)";

/// Shortest secret accepted, in bytes (a 256-bit HMAC key).
pub const MIN_SECRET_BYTES: usize = 32;

/// Secrets printed in tutorials and their copies: anyone can forge tokens
/// with them. Exact values, then (prefix, suffix) pairs for keys we know
/// only by their ends.
const PUBLISHED: &[&str] = &[
    "your_secret_key",
    "your-secret-key",
    "secret",
    "secret_key",
    "changeme",
    "change_me",
    "supersecret",
    "mysecretkey",
    // The FastAPI "OAuth2 with Password (and hashing), Bearer with JWT tokens" tutorial.
    "09d25e094faa6ca2556c818166b7a9563b93f7099f6f0f4caa6cf63b88e8d3e7",
];
const PUBLISHED_ENDS: &[(&str, &str)] = &[("380e91ed", "29185")];

/// Why a secret is refused, or `None` when it is fit for use.
pub fn weakness(secret: &str) -> Option<String> {
    let s = secret.trim();
    let lower = s.to_ascii_lowercase();
    if PUBLISHED.iter().any(|p| lower == *p)
        || PUBLISHED_ENDS.iter().any(|(a, z)| lower.starts_with(a) && lower.ends_with(z))
    {
        return Some(format!("the secret key is one published in tutorials, so anyone can forge tokens: {HOW_TO}"));
    }
    if s.len() < MIN_SECRET_BYTES {
        return Some(format!("the secret key is {} bytes, it must be at least {MIN_SECRET_BYTES}: {HOW_TO}", s.len()));
    }
    None
}

/// Where the secret came from, for the start-up log (never the value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// `PORTCULLIS_SECRET_KEY`.
    Environment,
    /// `--secret-key-file` or the generated file beside the database.
    File(PathBuf),
    /// Generated on this start and written to this file.
    Generated(PathBuf),
    /// Generated for an in-memory database; lost at exit.
    Ephemeral,
}

/// Finds the secret: the environment, then the given file, then the file
/// beside the database (generated on first start).
///
/// # Errors
/// A weak secret, an unreadable file, or no place to keep a generated one.
pub fn find(
    from_env: Option<&str>,
    file: Option<&Path>,
    beside_db: Option<&Path>,
) -> anyhow::Result<(SecretString, Origin)> {
    if let Some(value) = from_env {
        if let Some(why) = weakness(value) {
            bail!("PORTCULLIS_SECRET_KEY refused: {why}");
        }
        return Ok((SecretString::from(value.trim().to_owned()), Origin::Environment));
    }
    if let Some(path) = file {
        let value = read_secret_file(path)?;
        if let Some(why) = weakness(&value) {
            bail!("secret key file {} refused: {why}", path.display());
        }
        return Ok((SecretString::from(value), Origin::File(path.to_owned())));
    }
    let Some(path) = beside_db else {
        return Ok((generate(), Origin::Ephemeral));
    };
    if path.exists() {
        let value = read_secret_file(path)?;
        if let Some(why) = weakness(&value) {
            bail!("secret key file {} refused: {why}", path.display());
        }
        return Ok((SecretString::from(value), Origin::File(path.to_owned())));
    }
    let secret = generate();
    write_private(path, secret.expose_secret())
        .with_context(|| format!("writing the generated secret key to {}", path.display()))?;
    Ok((secret, Origin::Generated(path.to_owned())))
}

/// The file that keeps a generated secret for the database file `db`.
pub fn path_beside(db: &Path) -> PathBuf {
    db.with_extension("secret")
}

fn read_secret_file(path: &Path) -> anyhow::Result<String> {
    let text = fs::read_to_string(path).with_context(|| format!("reading secret key file {}", path.display()))?;
    Ok(text.trim().to_owned())
}

/// 256 random bits as 64 hex characters, the shape `openssl rand -hex 32`
/// gives, so a generated secret can be handed to tutorial-style resource
/// servers as it is.
fn generate() -> SecretString {
    let bytes: [u8; 32] = rand::random();
    SecretString::from(hex::encode(bytes))
}

fn write_private(path: &Path, value: &str) -> std::io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(value.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tutorial_secrets_are_refused_whatever_their_length() {
        for s in [
            "your_secret_key",
            "secret",
            "changeme",
            "09d25e094faa6ca2556c818166b7a9563b93f7099f6f0f4caa6cf63b88e8d3e7",
        ] {
            let why = weakness(s).unwrap();
            assert!(why.contains("openssl rand -hex 32"), "{why}");
        }
    }

    #[test]
    fn a_short_secret_is_refused_with_its_length() {
        let why = weakness("0123456789").unwrap();
        assert!(why.contains("10 bytes"), "{why}");
        assert!(!why.contains("0123456789"), "the secret must not be echoed");
    }

    #[test]
    fn a_random_hex_secret_is_accepted() {
        assert_eq!(weakness(generate().expose_secret()), None);
    }

    #[test]
    fn a_generated_secret_is_kept_with_mode_0600_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("portcullis.secret");
        let (first, origin) = find(None, None, Some(&path)).unwrap();
        assert_eq!(origin, Origin::Generated(path.clone()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let (again, origin) = find(None, None, Some(&path)).unwrap();
        assert_eq!(origin, Origin::File(path));
        assert_eq!(first.expose_secret(), again.expose_secret());
    }

    #[test]
    fn the_environment_wins_over_a_file() {
        let env = "f".repeat(40);
        let (s, origin) = find(Some(&env), Some(Path::new("/nonexistent")), None).unwrap();
        assert_eq!(origin, Origin::Environment);
        assert_eq!(s.expose_secret(), env);
    }
}
