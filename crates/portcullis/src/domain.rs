//! Values parsed at the edge: a [`Username`] (and the [`UserKey`] that
//! identifies it), a [`NewPassword`] and [`Scopes`] exist only in their
//! valid form, so the layers below never re-check them. A [`StoredHash`]
//! is the one value every layer passes along without reading.

use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::sync::LazyLock;

use icu_properties::props::{BidiControl, DefaultIgnorableCodePoint, GeneralCategory};
use icu_properties::{CodePointMapData, CodePointSetData};
use unicode_normalization::UnicodeNormalization;

/// Why an input value was refused; the text tells the user what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

/// What identifies a user: the name after NFKC normalization and Unicode
/// case folding, so `Alice`, `alice` and `ａｌｉｃｅ` are one key. The store
/// looks users up, and sessions name users, by this key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UserKey(String);

impl UserKey {
    /// The key of any string, valid username or not (a token's `sub`, or a
    /// typed name at login, where an invalid name must cost the same as an
    /// unknown one).
    pub fn of(raw: &str) -> Self {
        // Every request's `sub` comes through here. For ASCII, NFKC changes
        // nothing and case folding is lowercasing: the same key, without
        // three passes over Unicode tables.
        if raw.is_ascii() {
            return UserKey(raw.to_ascii_lowercase());
        }
        let folded = caseless::default_case_fold_str(&raw.nfkc().collect::<String>());
        UserKey(folded.nfkc().collect())
    }

    /// A key as the store keeps it.
    pub fn from_stored(key: String) -> Self {
        UserKey(key)
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The UTS #39 confusable skeleton of the key: two names look alike
    /// ignoring case (Cyrillic `аdmin` and `admin`, `adrnin` and `admin`,
    /// `paypa1` and `paypal`) when these are equal. See [`Username::skeletons`].
    pub fn skeleton(&self) -> String {
        unicode_security::skeleton(&self.0).collect()
    }
}

impl fmt::Display for UserKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A username as its owner wrote it, with the key that identifies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username {
    display: String,
    key: UserKey,
}

/// The longest username, in characters.
pub const USERNAME_MAX_CHARS: usize = 64;

/// Why a code point may not be in a username, if it may not: one that does
/// not show (controls, format characters such as U+200B ZERO WIDTH SPACE or
/// U+FEFF, every Default_Ignorable_Code_Point such as U+00AD SOFT HYPHEN or
/// U+115F HANGUL CHOSEONG FILLER), one that reorders the text around it
/// (Bidi_Control: U+202E, U+2066..U+2069, U+061C, …), whitespace, and one
/// whose look no one can tell (private use, unassigned, noncharacters).
/// Properties come from ICU4X's Unicode data, not from a table of our own.
fn refusal(c: char) -> Option<&'static str> {
    let category = CodePointMapData::<GeneralCategory>::new().get(c);
    if c.is_whitespace()
        || matches!(
            category,
            GeneralCategory::SpaceSeparator | GeneralCategory::LineSeparator | GeneralCategory::ParagraphSeparator
        )
    {
        return Some("spaces");
    }
    if category == GeneralCategory::Control {
        return Some("control characters");
    }
    if category == GeneralCategory::Format
        || CodePointSetData::new::<DefaultIgnorableCodePoint>().contains(c)
        || CodePointSetData::new::<BidiControl>().contains(c)
    {
        return Some("an invisible or direction-changing character");
    }
    match category {
        GeneralCategory::PrivateUse => Some("a private-use character"),
        // Unassigned (as of the Unicode data built in) or a noncharacter.
        GeneralCategory::Unassigned | GeneralCategory::Surrogate => Some("an unassigned code point"),
        _ => None,
    }
}

/// The first refused code point of `name`, named in the error.
fn refuse_code_points(name: &str) -> Result<(), Invalid> {
    match name.chars().find_map(|c| refusal(c).map(|why| (c, why))) {
        Some((c, why)) => Err(Invalid(format!("username must not contain {why} (U+{:04X})", u32::from(c)))),
        None => Ok(()),
    }
}

impl Username {
    /// Parses a username: 1 to 64 characters after NFKC, none of them
    /// whitespace, a control, format, bidi-control or default-ignorable code
    /// point, private use or unassigned (see `refusal`), and no `:`.
    ///
    /// # Errors
    /// [`Invalid`] saying which rule the name breaks, naming the code point.
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        // The typed name first, so the message names what was typed; then
        // its NFKC form, in case normalization produced such a code point.
        refuse_code_points(raw)?;
        let display = Username::shape(raw)?;
        refuse_code_points(&display)?;
        let key = UserKey::of(&display);
        Ok(Username { display, key })
    }

    /// The rules every stored name meets, including names stored before
    /// [`refusal`] existed (so their users can still log in and be found to
    /// be deleted): 1 to 64 characters after NFKC, no whitespace or
    /// control character (C0, C1), no `:`. Returns the NFKC form.
    fn shape(raw: &str) -> Result<String, Invalid> {
        let display: String = raw.nfkc().collect();
        if display.is_empty() {
            return Err(Invalid("username must not be empty".into()));
        }
        if display.chars().count() > USERNAME_MAX_CHARS {
            return Err(Invalid(format!("username must be at most {USERNAME_MAX_CHARS} characters")));
        }
        if display.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(Invalid("username must not contain spaces or control characters".into()));
        }
        if display.contains(':') {
            // A colon would make HTTP Basic credentials ambiguous.
            return Err(Invalid("username must not contain ':'".into()));
        }
        Ok(display)
    }

    /// A name as the store keeps it: it was parsed before it was stored.
    pub fn from_stored(display: String, key: UserKey) -> Self {
        Username { display, key }
    }

    /// The key to look a typed name up by, or `None` when no stored user can
    /// have it (it breaks the rules every stored name meets): such names
    /// never reach the database (PostgreSQL refuses a NUL byte, for one).
    /// Names refused only by the newer code-point rules still have a key,
    /// so a user stored before them can log in and be found (and deleted).
    pub fn lookup_key(raw: &str) -> Option<UserKey> {
        Username::shape(raw).ok().map(|display| UserKey::of(&display))
    }

    /// The name as registered; this is the token's `sub`.
    pub fn as_str(&self) -> &str {
        &self.display
    }

    /// The normalized, case-folded key.
    pub fn key(&self) -> &UserKey {
        &self.key
    }

    /// The UTS #39 skeletons a new name must share with no stored user's
    /// (the store keeps them unique): the key's, for names alike ignoring
    /// case ([`UserKey::skeleton`]), and the name's as written, for capitals
    /// that case folding would hide (`paypaI` with a capital I, Greek `ΒΟΒ`).
    /// One or two, distinct. Only creating a user looks at them; lookups go
    /// by the key.
    pub fn skeletons(&self) -> Vec<String> {
        let of_key = self.key.skeleton();
        let as_written: String = unicode_security::skeleton(&self.display).collect();
        if as_written == of_key { vec![of_key] } else { vec![of_key, as_written] }
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display)
    }
}

/// A stored password hash (PHC or bcrypt modular-crypt string). Its `Debug`
/// hides the value, so a hash never reaches a log line by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredHash(String);

impl fmt::Debug for StoredHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StoredHash(..)")
    }
}

impl StoredHash {
    /// Wraps a hash read from storage or an import file.
    pub fn new(hash: String) -> Self {
        StoredHash(hash)
    }

    /// The string to store.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Shortest password, in characters (NIST SP 800-63B §5.1.1.2).
pub const PASSWORD_MIN_CHARS: usize = 8;
/// Longest password, in bytes: long enough for passphrases, short enough
/// that hashing cannot be turned into a denial of service.
pub const PASSWORD_MAX_BYTES: usize = 1024;

/// The most common passwords, lowercased: see `data/README.md` for the source.
static COMMON_PASSWORDS: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| include_str!("../data/common-passwords.txt").lines().collect());

/// A password someone wants to set, checked against the rules of NIST SP
/// 800-63B: length only, no composition rules, common passwords refused.
/// Its `Debug` never shows it.
#[derive(Clone)]
pub struct NewPassword(String);

impl fmt::Debug for NewPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NewPassword(..)")
    }
}

impl NewPassword {
    /// Checks a password against the rules.
    ///
    /// # Errors
    /// [`Invalid`] naming the rule; the message never contains the password.
    pub fn parse(raw: String) -> Result<Self, Invalid> {
        if raw.chars().count() < PASSWORD_MIN_CHARS {
            return Err(Invalid(format!("password must be at least {PASSWORD_MIN_CHARS} characters")));
        }
        if raw.len() > PASSWORD_MAX_BYTES {
            return Err(Invalid(format!("password must be at most {PASSWORD_MAX_BYTES} bytes")));
        }
        if COMMON_PASSWORDS.contains(raw.to_lowercase().as_str()) {
            return Err(Invalid("password is too common (it is on a list of leaked passwords): choose another".into()));
        }
        Ok(NewPassword(raw))
    }

    /// The password itself, for hashing.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Checks an email address loosely (one `@`, no spaces, at most 254 bytes):
/// deliverability is the owner's business. Empty means none.
///
/// # Errors
/// [`Invalid`] saying what is wrong.
pub fn parse_email(raw: Option<String>) -> Result<Option<String>, Invalid> {
    let Some(email) = raw.map(|e| e.trim().to_owned()).filter(|e| !e.is_empty()) else { return Ok(None) };
    let ok = email.len() <= 254
        && email.matches('@').count() == 1
        && !email.starts_with('@')
        && !email.ends_with('@')
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if !ok {
        return Err(Invalid("email must look like name@example.com".into()));
    }
    Ok(Some(email))
}

/// Checks a full name: at most 200 characters, no control characters.
/// Empty means none.
///
/// # Errors
/// [`Invalid`] saying what is wrong.
pub fn parse_full_name(raw: Option<String>) -> Result<Option<String>, Invalid> {
    let Some(name) = raw.map(|e| e.trim().to_owned()).filter(|e| !e.is_empty()) else { return Ok(None) };
    if name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(Invalid("full_name must be at most 200 characters, without control characters".into()));
    }
    Ok(Some(name))
}

/// A set of scope names, e.g. `admin items:read`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scopes(BTreeSet<String>);

impl Scopes {
    /// Parses space-separated scope names (RFC 6749 §3.3 characters).
    ///
    /// # Errors
    /// [`Invalid`] for a character a scope may not hold.
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        Scopes::from_names(raw.split_ascii_whitespace())
    }

    /// Builds a set from scope names.
    ///
    /// # Errors
    /// [`Invalid`] for a name with a character a scope may not hold.
    pub fn from_names<I, S>(names: I) -> Result<Self, Invalid>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut set = BTreeSet::new();
        for name in names {
            let name = name.as_ref();
            // RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
            let ok = !name.is_empty()
                && name.len() <= 128
                && name.bytes().all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b));
            if !ok {
                return Err(Invalid(format!(
                    "invalid scope {name:?}: use printable ASCII without spaces, quotes or backslashes"
                )));
            }
            set.insert(name.to_owned());
        }
        Ok(Scopes(set))
    }

    /// The scopes granted when a user asks for `requested`: the ones both
    /// ask for and hold; asking for none grants all held.
    pub fn grant(&self, requested: &Scopes) -> Scopes {
        if requested.0.is_empty() {
            return self.clone();
        }
        Scopes(self.0.intersection(&requested.0).cloned().collect())
    }

    /// The scopes in both sets (unlike [`Scopes::grant`], an empty side
    /// gives an empty set: never "all").
    pub fn intersection(&self, other: &Scopes) -> Scopes {
        Scopes(self.0.intersection(&other.0).cloned().collect())
    }

    /// Whether every scope of this set is in `other`.
    pub fn is_subset(&self, other: &Scopes) -> bool {
        self.0.is_subset(&other.0)
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether the set holds `scope`.
    pub fn contains(&self, scope: &str) -> bool {
        self.0.contains(scope)
    }

    /// The names, sorted.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    /// The names as a list.
    pub fn to_vec(&self) -> Vec<String> {
        self.0.iter().cloned().collect()
    }
}

impl fmt::Display for Scopes {
    /// Space-separated, as in the `scope` claim and parameter.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let joined: Vec<&str> = self.iter().collect();
        f.write_str(&joined.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_username_differing_only_in_case_is_the_same_user() {
        assert_eq!(Username::parse("Alice").unwrap().key(), Username::parse("alice").unwrap().key());
    }

    #[test]
    fn a_fullwidth_username_is_the_same_user() {
        assert_eq!(Username::parse("ａｌｉｃｅ").unwrap().key().as_str(), "alice");
    }

    #[test]
    fn case_folding_goes_beyond_ascii() {
        assert_eq!(UserKey::of("STRASSE"), UserKey::of("straße"));
    }

    #[test]
    fn composed_and_decomposed_spellings_are_the_same_user() {
        assert_eq!(UserKey::of("jos\u{e9}"), UserKey::of("jose\u{301}"));
    }

    #[test]
    fn a_name_no_user_can_have_has_no_lookup_key() {
        assert_eq!(Username::lookup_key("ALICE"), Some(UserKey::of("alice")));
        assert_eq!(Username::lookup_key("a\0b"), None);
        assert_eq!(Username::lookup_key(&"u".repeat(10_000)), None);
    }

    #[test]
    fn the_display_form_is_kept() {
        assert_eq!(Username::parse("Alice").unwrap().as_str(), "Alice");
    }

    #[test]
    fn empty_spaced_long_and_colon_usernames_are_refused() {
        assert!(Username::parse("").is_err());
        assert!(Username::parse("a b").is_err());
        assert!(Username::parse("a\u{7}").is_err());
        assert!(Username::parse("a:b").is_err());
        assert!(Username::parse(&"x".repeat(65)).is_err());
        assert!(Username::parse(&"x".repeat(64)).is_ok());
    }

    /// The impersonating names and more of the same kinds: each is
    /// refused, naming the code point.
    #[test]
    fn invisible_and_direction_changing_code_points_are_refused() {
        let cases = [
            ("admin\u{200b}", "U+200B"),   // zero width space (Cf)
            ("ad\u{ad}min", "U+00AD"),     // soft hyphen (Cf, default ignorable)
            ("\u{202e}nimda", "U+202E"),   // right-to-left override (bidi control)
            ("admin\u{feff}", "U+FEFF"),   // byte order mark (Cf)
            ("a\u{2066}dmin", "U+2066"),   // left-to-right isolate
            ("a\u{2067}dmin", "U+2067"),   // right-to-left isolate
            ("a\u{2068}dmin", "U+2068"),   // first strong isolate
            ("a\u{2069}dmin", "U+2069"),   // pop directional isolate
            ("admin\u{61c}", "U+061C"),    // Arabic letter mark
            ("admin\u{200e}", "U+200E"),   // left-to-right mark
            ("admin\u{180e}", "U+180E"),   // Mongolian vowel separator (Cf)
            ("admin\u{34f}", "U+034F"),    // combining grapheme joiner (Mn, default ignorable)
            ("admin\u{115f}", "U+115F"),   // Hangul choseong filler (Lo, default ignorable)
            ("admin\u{3164}", "U+3164"),   // Hangul filler (Lo, default ignorable)
            ("admin\u{e0041}", "U+E0041"), // tag Latin capital A
            ("admin\u{200d}", "U+200D"),   // zero width joiner
            ("admin\u{fe0f}", "U+FE0F"),   // variation selector 16
            ("admin\u{2060}", "U+2060"),   // word joiner
        ];
        for (name, code_point) in cases {
            let refused = Username::parse(name).expect_err(name);
            assert!(refused.0.contains("invisible or direction-changing"), "{name:?}: {refused}");
            assert!(refused.0.contains(code_point), "{name:?}: {refused}");
        }
    }

    #[test]
    fn spaces_controls_private_use_and_unassigned_code_points_are_refused() {
        let cases = [
            ("ad min", "spaces (U+0020)"),
            ("admin\u{a0}", "spaces (U+00A0)"),
            ("admin\u{3000}", "spaces (U+3000)"),
            ("admin\u{2028}", "spaces (U+2028)"),
            ("admin\u{85}", "spaces (U+0085)"),
            ("admin\u{7}", "control characters (U+0007)"),
            ("admin\u{9b}", "control characters (U+009B)"),
            ("admin\u{e000}", "private-use character (U+E000)"),
            ("admin\u{f0000}", "private-use character (U+F0000)"),
            ("admin\u{378}", "unassigned code point (U+0378)"),
            ("admin\u{fffe}", "unassigned code point (U+FFFE)"),
        ];
        for (name, why) in cases {
            let refused = Username::parse(name).expect_err(name);
            assert!(refused.0.contains(why), "{name:?}: {refused}");
        }
    }

    #[test]
    fn names_in_other_scripts_are_accepted() {
        for name in
            ["Zoë", "José", "李小龙", "Ångström", "Дмитрий", "δοκιμή", "שלום", "مرحبا", "ゆうき", "o'brien", "🦀"]
        {
            assert!(Username::parse(name).is_ok(), "{name:?}");
        }
    }

    #[test]
    fn a_user_stored_before_the_code_point_rules_can_still_be_looked_up() {
        let legacy = UserKey::of("admin\u{200b}");
        assert_eq!(Username::lookup_key("ADMIN\u{200b}"), Some(legacy.clone()));
        assert_ne!(legacy, UserKey::of("admin"));
    }

    #[test]
    fn confusable_names_share_a_skeleton() {
        let skeleton = |name: &str| Username::parse(name).unwrap().key().skeleton();
        assert_eq!(skeleton("\u{430}dmin"), skeleton("admin"), "Cyrillic a");
        assert_eq!(skeleton("\u{410}DMIN"), skeleton("admin"), "Cyrillic capital A, case folded");
        assert_eq!(skeleton("adrnin"), skeleton("admin"), "rn looks like m (UTS #39)");
        assert_eq!(skeleton("paypa1"), skeleton("paypal"), "1 looks like l");
        assert_eq!(skeleton("Admin"), skeleton("admin"));
        assert_ne!(skeleton("admin1"), skeleton("admin"));
        assert_ne!(skeleton("bob"), skeleton("alice"));
    }

    #[test]
    fn capitals_that_look_like_another_name_share_a_skeleton_as_written() {
        let skeletons = |name: &str| Username::parse(name).unwrap().skeletons();
        let alike = |a: &str, b: &str| skeletons(a).iter().any(|s| skeletons(b).contains(s));
        assert!(alike("paypaI", "paypal"), "capital I looks like l");
        assert!(alike("\u{392}\u{39f}\u{392}", "BOB"), "Greek capitals");
        assert!(alike("\u{430}lice", "ALICE"), "Cyrillic a, against the key");
        assert!(alike("Alice", "alice"));
        assert!(!alike("bob", "BOB1"));
        assert_eq!(skeletons("alice"), vec!["alice".to_owned()], "one when both are the same");
    }

    #[test]
    fn a_short_password_is_refused_by_characters_not_bytes() {
        assert!(NewPassword::parse("ab".into()).is_err());
        assert!(NewPassword::parse("ééééééé".into()).is_err());
        assert!(NewPassword::parse("correct horse".into()).is_ok());
    }

    #[test]
    fn a_password_over_1024_bytes_is_refused() {
        assert!(NewPassword::parse("é".repeat(513)).is_err());
        assert!(NewPassword::parse("xq".repeat(512)).is_ok());
    }

    #[test]
    fn common_passwords_are_refused_in_any_case() {
        assert!(NewPassword::parse("password".into()).is_err());
        assert!(NewPassword::parse("PassWord".into()).is_err());
        assert!(NewPassword::parse("12345678".into()).is_err());
    }

    #[test]
    fn the_common_password_list_holds_at_least_ten_thousand_entries() {
        assert!(COMMON_PASSWORDS.len() >= 10_000);
    }

    #[test]
    fn a_password_never_shows_in_debug_output() {
        let p = NewPassword::parse("hunter2-but-longer".into()).unwrap();
        assert!(!format!("{p:?}").contains("hunter"));
    }

    #[test]
    fn granted_scopes_are_the_intersection_of_asked_and_held() {
        let held = Scopes::parse("me items").unwrap();
        assert_eq!(held.grant(&Scopes::parse("items admin").unwrap()).to_string(), "items");
        assert_eq!(held.grant(&Scopes::default()).to_string(), "items me");
    }

    #[test]
    fn emails_and_names_are_checked_loosely() {
        assert_eq!(parse_email(Some(" a@b.c ".into())).unwrap().as_deref(), Some("a@b.c"));
        assert_eq!(parse_email(Some("".into())).unwrap(), None);
        assert!(parse_email(Some("no-at".into())).is_err());
        assert!(parse_email(Some("a b@c".into())).is_err());
        assert!(parse_full_name(Some("x\u{0}".into())).is_err());
        assert!(parse_full_name(Some("Zoë Ångström".into())).is_ok());
    }

    #[test]
    fn an_empty_grant_stays_empty_when_intersected() {
        let held = Scopes::parse("me admin").unwrap();
        assert!(Scopes::default().intersection(&held).is_empty());
        assert!(held.grant(&Scopes::default()).is_subset(&held));
    }

    #[test]
    fn a_scope_with_a_quote_is_refused() {
        assert!(Scopes::parse("a\"b").is_err());
        assert!(Scopes::parse("items:read admin").is_ok());
    }
}
