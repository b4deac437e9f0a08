//! The tag that names a cloud's VMs, and the annotation that marks them.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::CloudError;

/// A validated tag: lowercase letters, digits and hyphens, 1 to 63
/// characters, no hyphen at either end. Instance names are `<tag>-<n>`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Tag(String);

/// The longest tag accepted.
pub const MAX_TAG_LEN: usize = 63;

impl Tag {
    /// `base`, with `-MMDD-HHMMSS` (UTC, now) appended when `timestamp`;
    /// every rule the result breaks is reported at once.
    pub fn new(base: &str, timestamp: bool) -> Result<Self, CloudError> {
        let tag = if timestamp {
            format!("{base}-{}", timestamp_suffix(SystemTime::now()))
        } else {
            base.to_owned()
        };
        Self::parse(&tag)
    }

    /// Validates `tag` as it is.
    pub fn parse(tag: &str) -> Result<Self, CloudError> {
        let problems = tag_problems(tag);
        if problems.is_empty() {
            Ok(Tag(tag.to_owned()))
        } else {
            Err(CloudError::InvalidTag {
                tag: tag.to_owned(),
                problems,
            })
        }
    }

    /// The tag.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Every rule `tag` breaks (empty when valid).
pub(crate) fn tag_problems(tag: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let len = tag.chars().count();
    if len == 0 {
        problems.push("it is empty; give 1 to 63 characters".to_owned());
    }
    if len > MAX_TAG_LEN {
        problems.push(format!(
            "it is {len} characters long; at most {MAX_TAG_LEN} are allowed"
        ));
    }
    if tag.chars().any(char::is_uppercase) {
        problems.push("it has uppercase letters; use lowercase".to_owned());
    }
    let bad: Vec<char> = tag
        .chars()
        .filter(|c| {
            !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || c.is_uppercase())
        })
        .collect();
    if !bad.is_empty() {
        let shown: String = bad.iter().map(|c| format!("{c:?} ")).collect();
        problems.push(format!(
            "it has characters other than a-z, 0-9 and '-': {}",
            shown.trim_end()
        ));
    }
    if tag.starts_with('-') || tag.ends_with('-') {
        problems.push("it starts or ends with a hyphen".to_owned());
    }
    problems
}

/// `MMDD-HHMMSS` of `now` in UTC.
pub(crate) fn timestamp_suffix(now: SystemTime) -> String {
    let secs = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (_, month, day) = civil_from_days(days);
    format!(
        "{month:02}{day:02}-{:02}{:02}{:02}",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// (year, month, day) of a day count since 1970-01-01 (the proleptic
/// Gregorian calendar; Howard Hinnant's days-to-civil method).
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The day count since 1970-01-01 of a (year, month, day) (the inverse of
/// [`civil_from_days`]).
pub(crate) fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// What a VM made by vmw is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// A launched instance.
    Instance,
    /// An image made by a snapshot.
    Image,
    /// A source template imported by vmw (never deleted by delete, clean
    /// or sweep; only replaced by an import).
    Template,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Instance => "instance",
            Kind::Image => "image",
            Kind::Template => "template",
        }
    }
}

const ANNOTATION_PREFIX: &str = "made by vmw (tag: ";

/// The annotation (vSphere "notes") vmw writes on the VMs it makes: vmw's
/// marker. [`crate::Cloud::list`] and [`crate::Cloud::sweep`] find VMs by
/// it, even after a crash, and nothing without it is destroyed unless the
/// caller forces it: `made by vmw (tag: <tag>, kind: instance, launch:
/// <id>)`. The launch id is new for every clone vmw makes, so a rollback
/// removes only the VM its own call created, never another run's VM that
/// happens to have the same name.
pub(crate) fn annotation(tag: &Tag, kind: Kind, launch: &str) -> String {
    format!(
        "{ANNOTATION_PREFIX}{tag}, kind: {}, launch: {launch})",
        kind.as_str()
    )
}

/// A new launch id: 16 random hex digits.
pub(crate) fn new_launch_id() -> String {
    let n: u64 = rand::random();
    format!("{n:016x}")
}

/// vmw's marker, read from a VM's annotation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Marker {
    /// The tag of the cloud that made the VM.
    pub tag: String,
    /// Instance or image.
    pub kind: Kind,
    /// The id of the clone that made it (absent in annotations written
    /// before launch ids existed).
    pub launch: Option<String>,
}

/// Reads vmw's marker from an annotation.
///
/// The marker is the annotation's first line; a line below it may say
/// that an interrupted run left the VM (see [`crate::Cloud::recover`]).
pub fn parse_marker(text: &str) -> Option<Marker> {
    let first = text.trim().lines().next().unwrap_or_default();
    let rest = first.trim().strip_prefix(ANNOTATION_PREFIX)?;
    let (tag, rest) = rest.split_once(", kind: ")?;
    let rest = rest.strip_suffix(')')?;
    let (kind, launch) = match rest.split_once(", launch: ") {
        Some((k, l)) => (k, Some(l)),
        None => (rest, None),
    };
    let kind = match kind {
        "instance" => Kind::Instance,
        "image" => Kind::Image,
        "template" => Kind::Template,
        _ => return None,
    };
    if tag.is_empty() || launch.is_some_and(|l| l.is_empty() || l.contains([',', ')'])) {
        return None;
    }
    Some(Marker {
        tag: tag.to_owned(),
        kind,
        launch: launch.map(str::to_owned),
    })
}

/// The start of the annotation of VMs whose tag starts with `base`.
pub(crate) fn annotation_prefix_for(base: &str) -> String {
    format!("{ANNOTATION_PREFIX}{base}")
}

/// The glob on the annotation that matches VMs of `tag`, or of any tag.
pub fn annotation_glob(tag: Option<&Tag>) -> String {
    match tag {
        Some(t) => format!("{ANNOTATION_PREFIX}{t}, kind: *"),
        None => format!("{ANNOTATION_PREFIX}*"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn valid_tags() {
        for t in ["a", "me", "ci-123", "a1-b2-c3", &"x".repeat(63)] {
            assert!(Tag::parse(t).is_ok(), "{t}");
        }
    }

    #[test]
    fn every_broken_rule_is_reported() {
        let err = Tag::parse("-Bad_Tag!").unwrap_err();
        let CloudError::InvalidTag { problems, .. } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(problems.len(), 3, "{problems:?}");
        let msg = err.to_string();
        assert!(msg.contains("uppercase"), "{msg}");
        assert!(msg.contains("'_' '!'"), "{msg}");
        assert!(msg.contains("hyphen"), "{msg}");

        let long = Tag::parse(&"a".repeat(64)).unwrap_err().to_string();
        assert!(long.contains("64 characters"), "{long}");
        assert!(Tag::parse("").unwrap_err().to_string().contains("empty"));
        assert!(Tag::parse("ci-").is_err());
    }

    #[test]
    fn timestamp_is_mmdd_hhmmss_utc() {
        // 2026-11-23 21:14:05 UTC
        let t = UNIX_EPOCH + Duration::from_secs(1_795_468_445);
        assert_eq!(timestamp_suffix(t), "1123-211405");
        assert_eq!(timestamp_suffix(UNIX_EPOCH), "0101-000000");
        // A leap day.
        let leap = UNIX_EPOCH + Duration::from_secs(1_709_164_800 + 3_599);
        assert_eq!(timestamp_suffix(leap), "0229-005959");
        let tag = Tag::new("me", true).unwrap();
        assert_eq!(tag.as_str().len(), "me-1123-211405".len());
        // A base already at the limit no longer fits once stamped.
        assert!(Tag::new(&"a".repeat(60), true).is_err());
        assert!(Tag::new(&"a".repeat(60), false).is_ok());
    }

    #[test]
    fn annotations_round_trip_and_globs_match_them() {
        let tag = Tag::parse("me-1123-211405").unwrap();
        let a = annotation(&tag, Kind::Image, "00ff");
        assert_eq!(
            a,
            "made by vmw (tag: me-1123-211405, kind: image, launch: 00ff)"
        );
        assert_eq!(
            parse_marker(&a).map(|m| (m.tag, m.kind)),
            Some(("me-1123-211405".to_owned(), Kind::Image))
        );
        assert_eq!(
            parse_marker(&a).and_then(|m| m.launch).as_deref(),
            Some("00ff")
        );
        // Written before launch ids: still vmw's, with no launch id.
        let old = parse_marker("made by vmw (tag: me, kind: instance)").unwrap();
        assert_eq!((old.tag.as_str(), old.launch), ("me", None));
        assert_eq!(parse_marker("made by vmw (tag: me, kind: vm)"), None);
        assert_ne!(new_launch_id(), new_launch_id());
        assert_eq!(new_launch_id().len(), 16);
        assert_eq!(parse_marker("some user's notes"), None);
        assert_eq!(
            annotation_glob(Some(&tag)),
            "made by vmw (tag: me-1123-211405, kind: *"
        );
        assert_eq!(annotation_glob(None), "made by vmw (tag: *");
    }
}
