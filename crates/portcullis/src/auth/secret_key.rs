//! The deployment's secrets: the secret key (the HS256 key the tutorials'
//! resource servers share, and what seals private signing keys unless a
//! master key is set), where it comes from, and refusing the ones that
//! protect nothing (too short, copied from a tutorial, on a public list of
//! JWT secrets, or made of repeats, sequences and dictionary words).

use std::collections::HashSet;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use anyhow::{Context, bail};
use secrecy::{ExposeSecret, SecretString};
use zxcvbn::matching::patterns::MatchPattern;

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

/// The public wordlist of JWT secrets that cracking tools try first, cut to
/// its entries of at least [`MIN_SECRET_BYTES`] and ASCII-lowercased: see
/// `data/README.md` for the source.
static JWT_WORDLIST: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| include_str!("../../data/jwt-secrets.txt").lines().collect());

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
    if JWT_WORDLIST.contains(lower.as_str()) {
        return Some(format!(
            "the secret key is on a public wordlist of JWT secrets, which cracking tools try first, so anyone can \
             forge tokens: {HOW_TO}"
        ));
    }
    let strength = Strength::of(s);
    if strength.is_weak() {
        return Some(format!(
            "the secret key is far weaker than its length: it is made of repeats, sequences or dictionary words \
             (estimated {:.0} bits of strength, where a random one of its length would have {:.0}): {HOW_TO}",
            strength.bits, strength.random_bits
        ));
    }
    None
}

/// A secret's strength is judged on its first this many characters (as
/// zxcvbn judges a password), so a long secret cannot make start-up slow:
/// the estimate costs about [`PIECE_CHARS`] zxcvbn runs a character (~40 ms
/// in all at 100). That holds the recommended 64 hex characters with room
/// for a prefix; what follows could only add strength.
const STRENGTH_CHARS: usize = 100;
/// Longest piece handed to zxcvbn at once. Short pieces keep every run
/// cheap, and keep its guess count (a `u64`) from saturating: beyond ~19
/// digits zxcvbn rates every string alike.
const PIECE_CHARS: usize = 12;
/// The fewest bits a piece of two or more characters costs: zxcvbn's own
/// floor for a part of a password (50 guesses).
const MIN_PIECE_BITS: f64 = 5.643_856_189_774_724;
/// A secret estimated at this many bits or more is strong enough for an
/// HMAC key whatever its length (HS256 offers 128-bit security).
const ENOUGH_BITS: f64 = 128.0;
/// Below [`ENOUGH_BITS`], a secret must keep at least this share of the
/// strength a random string of its length and characters would have.
/// In 3,000 draws of each shape, random secrets kept 0.55 or more (64 and
/// 32 hex characters, base64, printable ASCII, letters and digits,
/// lowercase, UUIDs, decimal digits); `thisismysupersecretkeyforjwttokens`
/// keeps 0.47, repeats and sequences under 0.2.
const MIN_STRENGTH_SHARE: f64 = 0.5;

/// A strength estimate of a secret's first [`STRENGTH_CHARS`] characters,
/// in bits: what it costs to guess them, built from pieces zxcvbn
/// recognises (dictionary words, l33t, repeats, sequences, keyboard walks,
/// dates), copies of earlier text, and single characters costed as random
/// ones of the secret's alphabet, choosing the cheapest way. zxcvbn alone
/// rates a whole secret by a model (10 guesses a character, a saturating
/// count, a penalty per piece) under which a phrase of 34 lowercase letters
/// rates as high as a random one.
struct Strength {
    /// The estimate.
    bits: f64,
    /// What a random string of the same length and alphabet would have.
    random_bits: f64,
}

impl Strength {
    fn of(secret: &str) -> Self {
        let chars: Vec<char> = secret.chars().take(STRENGTH_CHARS).collect();
        let per_char = alphabet_size(&chars).log2();
        let n = chars.len();
        // pieces[end]: the (start, bits) of the pieces that end there.
        let mut pieces: Vec<Vec<(usize, f64)>> = vec![Vec::new(); n + 1];
        for start in 0..n {
            for end in start + 2..=(start + PIECE_CHARS).min(n) {
                let piece: String = chars[start..end].iter().collect();
                let estimate = zxcvbn::zxcvbn(&piece, &[]);
                if let [one] = estimate.sequence() {
                    if !matches!(one.pattern, MatchPattern::BruteForce) {
                        pieces[end].push((start, estimate.guesses_log10() * std::f64::consts::LOG2_10));
                    }
                }
            }
            // A copy of earlier text (it may overlap itself: `aaaa`) costs
            // where it starts and how long it is.
            let longest_copy = (0..start)
                .map(|earlier| chars[start..].iter().zip(&chars[earlier..]).take_while(|(a, b)| a == b).count())
                .max()
                .unwrap_or(0);
            for len in 3..=longest_copy {
                pieces[start + len].push((start, ((start * len) as f64).log2()));
            }
        }
        let mut cheapest = vec![0.0_f64; n + 1];
        for end in 1..=n {
            cheapest[end] = pieces[end].iter().fold(cheapest[end - 1] + per_char, |best, &(start, bits)| {
                best.min(cheapest[start] + bits.max(MIN_PIECE_BITS))
            });
        }
        Strength { bits: cheapest[n], random_bits: n as f64 * per_char }
    }

    fn is_weak(&self) -> bool {
        self.bits < ENOUGH_BITS && self.bits < MIN_STRENGTH_SHARE * self.random_bits
    }
}

/// How many characters the secret's characters are drawn from, as far as
/// they show: hexadecimal (with `-` or `:` between groups, as in UUIDs) or
/// decimal digits alone, else the sum of the classes present.
fn alphabet_size(chars: &[char]) -> f64 {
    if chars.iter().all(char::is_ascii_digit) {
        return 10.0;
    }
    let hex = |letters: std::ops::RangeInclusive<char>| {
        chars.iter().all(|c| c.is_ascii_digit() || letters.contains(c) || matches!(c, '-' | ':'))
    };
    if hex('a'..='f') || hex('A'..='F') {
        return 16.0;
    }
    let has = |class: fn(&char) -> bool| chars.iter().any(class);
    [
        (has(char::is_ascii_lowercase), 26.0),
        (has(char::is_ascii_uppercase), 26.0),
        (has(char::is_ascii_digit), 10.0),
        (has(|c| c.is_ascii() && !c.is_ascii_alphanumeric()), 33.0),
        (has(|c| !c.is_ascii()), 100.0),
    ]
    .iter()
    .filter(|(present, _)| *present)
    .map(|(_, size)| size)
    .sum()
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
    // An empty file is what a crash between creating and writing it left
    // (before writes became atomic): nothing can have used it.
    if path.exists() && !read_secret_file(path)?.is_empty() {
        let value = read_secret_file(path)?;
        if let Some(why) = weakness(&value) {
            bail!("secret key file {} refused: {why}", path.display());
        }
        return Ok((SecretString::from(value), Origin::File(path.to_owned())));
    }
    let secret = generate();
    if !keep_private(path, secret.expose_secret())
        .with_context(|| format!("writing the generated secret key to {}", path.display()))?
    {
        // Another process generated one first: use theirs.
        return Ok((SecretString::from(read_secret_file(path)?), Origin::File(path.to_owned())));
    }
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

/// Writes `value` to `path`, readable by its owner only, all or nothing: a
/// temporary file is written and synced, then linked into place (which
/// fails if another process got there first: `Ok(false)`, theirs stays) or,
/// over an empty file a crash left, renamed into place. A crash at any
/// point leaves either no file, an empty one, or the whole secret.
fn keep_private(path: &Path, value: &str) -> std::io::Result<bool> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", hex::encode(rand::random::<[u8; 8]>())));
    let written = (|| {
        let mut file = fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
        file.write_all(value.as_bytes())?;
        file.write_all(b"\n")?;
        file.sync_all()
    })();
    let placed = written.and_then(|()| match fs::hard_link(&tmp, path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            if fs::metadata(path)?.len() == 0 {
                fs::rename(&tmp, path).map(|()| true)
            } else {
                Ok(false)
            }
        }
        Err(e) => Err(e),
    });
    let _ = fs::remove_file(&tmp);
    let placed = placed?;
    // The new directory entry must survive a crash too.
    fs::File::open(dir)?.sync_all()?;
    Ok(placed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_file_left_empty_by_a_crash_is_replaced_and_no_temporary_file_stays() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("portcullis.secret");
        fs::write(&path, "").unwrap();

        let (secret, origin) = find(None, None, Some(&path)).unwrap();

        assert_eq!(origin, Origin::Generated(path.clone()));
        assert_eq!(read_secret_file(&path).unwrap(), secret.expose_secret());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, [std::ffi::OsString::from("portcullis.secret")], "no temporary file left");
    }

    #[test]
    fn two_processes_generating_at_once_end_up_with_one_secret() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("portcullis.secret");
        let found: Vec<String> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| s.spawn(|| find(None, None, Some(&path)).unwrap().0.expose_secret().to_owned()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(found.iter().all(|f| *f == found[0]), "every start uses the one secret kept");
        assert_eq!(read_secret_file(&path).unwrap(), found[0]);
    }

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

    fn assert_refused_for(secret: &str, reason: &str) {
        let why = weakness(secret).unwrap_or_else(|| panic!("{secret:?} should be refused"));
        assert!(why.contains(reason), "{secret:?}: {why}");
        assert!(why.contains("openssl rand -hex 32"), "{why}");
        assert!(!why.contains(secret), "the secret must not be echoed: {why}");
    }

    #[test]
    fn long_secrets_on_the_public_jwt_wordlist_are_refused_whatever_their_case() {
        for s in [
            "my_very_long_and_safe_secret_key",
            "MY_VERY_LONG_AND_SAFE_SECRET_KEY",
            "12345678901234567890123456789012",
            // Random-looking, so only the wordlist can know it.
            "89cbffaddc4948ee97d87a44edff6af4b2583fffe2e9e1575be293102763ee67",
        ] {
            assert_refused_for(s, "public wordlist of JWT secrets");
        }
    }

    #[test]
    fn every_entry_of_the_shipped_wordlist_is_refused() {
        assert!(JWT_WORDLIST.len() > 1_800, "the wordlist is loaded");
        for entry in JWT_WORDLIST.iter() {
            assert!(entry.len() >= MIN_SECRET_BYTES && entry.trim() == *entry, "{entry:?}");
            assert_eq!(*entry, entry.to_ascii_lowercase(), "entries are lowercased, as they are looked up");
            assert!(weakness(entry).is_some(), "{entry:?}");
        }
    }

    #[test]
    fn long_secrets_of_repeats_sequences_and_words_are_refused() {
        for s in [
            &"a".repeat(40),
            "abcdefghijklmnopqrstuvwxyz123456",
            "passwordpasswordpasswordpassword",
            "thisismysupersecretkeyforjwttokens",
            "my-application-secret-key-for-production",
            "test-secret-0123456789abcdef0123456789abcdef",
            "qwertyuiopasdfghjklzxcvbnm1234567890",
            "2024-01-01-2024-12-31-2025-06-30-2026",
        ] {
            assert_refused_for(s, "far weaker than its length");
        }
        let why = master_key(Some(&SecretString::from("thisismysupersecretkeyforjwttokens")), None).err().unwrap();
        assert!(why.to_string().contains("master key is far weaker"), "{why}");
    }

    #[test]
    fn random_secrets_of_every_usual_shape_are_accepted() {
        use base64::Engine as _;
        use rand::Rng as _;
        let mut rng = rand::rng();
        let mut from = |alphabet: &[u8], len: usize| -> String {
            (0..len).map(|_| char::from(alphabet[rng.random_range(0..alphabet.len())])).collect()
        };
        let printable: Vec<u8> = (b'!'..=b'~').collect();
        for _ in 0..25 {
            let uuid = hex::encode(rand::random::<[u8; 16]>());
            for s in [
                hex::encode(rand::random::<[u8; 32]>()),
                base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>()),
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>()),
                hex::encode(rand::random::<[u8; 16]>()),
                format!("{}-{}-{}-{}-{}", &uuid[..8], &uuid[8..12], &uuid[12..16], &uuid[16..20], &uuid[20..]),
                from(&printable, 32),
                from(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", 32),
                from(b"abcdefghijklmnopqrstuvwxyz", 32),
            ] {
                let strength = Strength::of(&s);
                assert!(!strength.is_weak(), "{s}: {} of {} bits", strength.bits, strength.random_bits);
            }
        }
    }

    #[test]
    fn the_strength_estimate_reads_only_the_start_of_a_long_secret() {
        let long = format!("{}{}", hex::encode(rand::random::<[u8; 32]>()), "a".repeat(10_000));
        let started = std::time::Instant::now();
        assert_eq!(weakness(&long), None);
        assert!(started.elapsed() < std::time::Duration::from_secs(5), "{:?}", started.elapsed());
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
        let env = "5d0b3c6e41f9a2787c1e95b0d34fa6e2c8b17a90";
        let (s, origin) = find(Some(env), Some(Path::new("/nonexistent")), None).unwrap();
        assert_eq!(origin, Origin::Environment);
        assert_eq!(s.expose_secret(), env);
    }
}
