//! Timestamps on boards without a real-time clock (docs/reference.md, the wire, timestamps).
//!
//! A record logged while the wall clock is earlier than `clock.valid_after_unix_ms` keeps the
//! boot clock (CLOCK_BOOTTIME, which nobody sets) and the boot id; when it is read for sending,
//! its `ts_ms` is repaired if the wall clock has become valid in the same boot:
//! `ts_ms = now_realtime - (now_boottime - boottime_at_log)`. Otherwise it is sent as logged and
//! marked "unset". [`ClockMark`] is what the envelope then says.
//!
//! The boot id is read once per open ([`BootClock::open`]); the records logged with an
//! invalid clock keep their boot clock in memory ([`crate::store::NewRecord`]`::boot_ms`) and
//! on disk in the `clock` table (src/store/schema.rs), written only for them.

use std::time::{SystemTime, UNIX_EPOCH};

/// The library's build time in Unix milliseconds (build.rs; `SOURCE_DATE_EPOCH` when set):
/// the default of `clock.valid_after_unix_ms`.
pub const BUILD_UNIX_MS: i64 = parse_ms(env!("EDGEBUF_BUILD_UNIX_MS"));

const fn parse_ms(s: &str) -> i64 {
    let b = s.as_bytes();
    let mut i = 0;
    let mut n: i64 = 0;
    while i < b.len() {
        if b[i].is_ascii_digit() && n < i64::MAX / 10 - 10 {
            n = n * 10 + (b[i] - b'0') as i64;
        }
        i += 1;
    }
    n
}

/// Where Linux keeps the id of the current boot (a random UUID drawn at each boot).
const BOOT_ID_PATH: &str = "/proc/sys/kernel/random/boot_id";

/// What the envelope says about a record's `ts_ms`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ClockMark {
    /// Logged with a valid wall clock: the envelope carries no `clock` field.
    #[default]
    Valid,
    /// Logged before the wall clock was valid; `ts_ms` was repaired from the boot clock.
    Repaired,
    /// Logged before the wall clock was valid and not repairable (another boot, or the clock
    /// is still not valid): `ts_ms` is as logged.
    Unset,
}

impl ClockMark {
    /// The envelope's `clock` value (and OTLP's `edgebuf.clock`); `None` for a valid clock.
    pub fn word(self) -> Option<&'static str> {
        match self {
            ClockMark::Valid => None,
            ClockMark::Repaired => Some("repaired"),
            ClockMark::Unset => Some("unset"),
        }
    }
}

/// A boot id as Linux writes it: a lowercase UUID, 8-4-4-4-12 hexadecimal digits. Anything else
/// read back from a buffer file is not one edgebuf wrote (and repairs nothing).
pub fn valid_boot_id(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, &c)| match i {
            8 | 13 | 18 | 23 => c == b'-',
            _ => c.is_ascii_digit() || (b'a'..=b'f').contains(&c),
        })
}

/// The current boot's id, if it can be read and looks like one.
pub(crate) fn read_boot_id() -> Option<String> {
    let s = std::fs::read_to_string(BOOT_ID_PATH).ok()?;
    let id = s.trim();
    valid_boot_id(id).then(|| id.to_owned())
}

/// The wall clock (CLOCK_REALTIME) in Unix milliseconds; 0 before 1970. The one reading of
/// it for `ts_ms`, the budget's period and the store's timestamps.
#[inline]
pub(crate) fn realtime_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The clock settings of one open buffer: the bound of a valid wall clock and this boot's id
/// (read once, at open).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct BootClock {
    /// `clock.valid_after_unix_ms` resolved (the build time while unset; 0: always valid).
    pub valid_after_ms: i64,
    /// This boot's id; `None` when it cannot be read: records logged with an invalid clock
    /// are then sent "unset".
    pub boot_id: Option<String>,
}

impl BootClock {
    /// Reads the boot id once, for the life of an open buffer.
    pub fn open(valid_after_ms: i64) -> BootClock {
        BootClock {
            valid_after_ms,
            boot_id: read_boot_id(),
        }
    }

    /// At edgebuf_log, with the wall clock `ts_ms` it already took: `None` when that clock is
    /// valid (one comparison), else the boot clock to keep with the record (-1 if it cannot
    /// be read: the record is then sent "unset").
    #[inline]
    pub fn at_log(&self, ts_ms: i64) -> Option<i64> {
        if ts_ms >= self.valid_after_ms {
            return None;
        }
        Some(crate::sys::boottime_ms().unwrap_or(-1))
    }

    /// The clocks now, to repair the records of one batch.
    pub fn now(&self) -> Now<'_> {
        Now {
            realtime_ms: realtime_ms(),
            boottime_ms: crate::sys::boottime_ms(),
            boot_id: self.boot_id.as_deref(),
            valid_after_ms: self.valid_after_ms,
        }
    }
}

/// The clocks at the moment records are read for sending (injected in the tests).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Now<'a> {
    pub realtime_ms: i64,
    pub boottime_ms: Option<i64>,
    pub boot_id: Option<&'a str>,
    pub valid_after_ms: i64,
}

impl Now<'_> {
    /// The `ts_ms` to send and its mark, for a record logged with an invalid wall clock at
    /// `ts_ms`, with the boot clock `boot_ms` in the boot `boot_id`. Repaired only when the wall
    /// clock is valid now, in the same boot, and the boot clock has not gone backwards;
    /// otherwise as logged and "unset". Values from a file are not trusted: any that does not
    /// fit gives "unset".
    pub fn repair(&self, ts_ms: i64, boot_ms: i64, boot_id: Option<&str>) -> (i64, ClockMark) {
        let unset = (ts_ms, ClockMark::Unset);
        if self.realtime_ms < self.valid_after_ms {
            return unset;
        }
        let same_boot =
            matches!((boot_id, self.boot_id), (Some(a), Some(b)) if a == b && valid_boot_id(a));
        let Some(now_boot) = self.boottime_ms else {
            return unset;
        };
        if !same_boot || boot_ms < 0 || boot_ms > now_boot {
            return unset;
        }
        match self.realtime_ms.checked_sub(now_boot - boot_ms) {
            Some(t) if t >= 0 => (t, ClockMark::Repaired),
            _ => unset,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOOT: &str = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";
    const OTHER: &str = "11111111-2222-3333-4444-555555555555";

    /// The clocks of a board that booted with its wall clock at 1970 + 60 s and set it to
    /// 2026-12-05 at boot + 100 s.
    fn now(boot_id: Option<&str>) -> Now<'_> {
        Now {
            realtime_ms: 1_796_000_000_000,
            boottime_ms: Some(100_000),
            boot_id,
            valid_after_ms: 1_764_000_000_000,
        }
    }

    #[test]
    fn a_record_of_this_boot_is_repaired_from_the_boot_clock() {
        // Logged at boot + 30 s (the wall clock said 1970 + 90 s): 70 s before now.
        let (ts, mark) = now(Some(BOOT)).repair(90_000, 30_000, Some(BOOT));
        assert_eq!(
            (ts, mark),
            (1_796_000_000_000 - 70_000, ClockMark::Repaired)
        );
        // Logged this very millisecond.
        let (ts, mark) = now(Some(BOOT)).repair(90_000, 100_000, Some(BOOT));
        assert_eq!((ts, mark), (1_796_000_000_000, ClockMark::Repaired));
    }

    #[test]
    fn another_boot_or_an_unknown_one_leaves_ts_as_logged() {
        for (logged, current) in [
            (Some(OTHER), Some(BOOT)),
            (None, Some(BOOT)),
            (Some(BOOT), None),
            (None, None),
            (Some(""), Some("")),
        ] {
            assert_eq!(
                now(current).repair(90_000, 30_000, logged),
                (90_000, ClockMark::Unset),
                "{logged:?} {current:?}"
            );
        }
    }

    #[test]
    fn a_wall_clock_still_not_valid_leaves_ts_as_logged() {
        let mut n = now(Some(BOOT));
        n.realtime_ms = n.valid_after_ms - 1;
        assert_eq!(
            n.repair(90_000, 30_000, Some(BOOT)),
            (90_000, ClockMark::Unset)
        );
        n.realtime_ms = n.valid_after_ms;
        assert_eq!(n.repair(90_000, 30_000, Some(BOOT)).1, ClockMark::Repaired);
    }

    #[test]
    fn hostile_or_impossible_boot_clocks_leave_ts_as_logged() {
        let n = now(Some(BOOT));
        // Unreadable at log (-1), after now (another boot that ran longer), absurd values.
        for boot_ms in [-1, 100_001, i64::MIN, i64::MAX] {
            assert_eq!(
                n.repair(90_000, boot_ms, Some(BOOT)),
                (90_000, ClockMark::Unset),
                "{boot_ms}"
            );
        }
        // A repair that would land before 1970.
        let mut n = now(Some(BOOT));
        n.realtime_ms = 50_000;
        n.valid_after_ms = 0;
        assert_eq!(n.repair(7, 0, Some(BOOT)), (7, ClockMark::Unset));
        // The boot clock cannot be read now.
        let mut n = now(Some(BOOT));
        n.boottime_ms = None;
        assert_eq!(n.repair(7, 0, Some(BOOT)), (7, ClockMark::Unset));
    }

    #[test]
    fn at_log_costs_one_comparison_for_a_valid_clock() {
        let c = BootClock {
            valid_after_ms: 1_000,
            boot_id: Some(BOOT.into()),
        };
        assert_eq!(c.at_log(1_000), None);
        assert_eq!(c.at_log(5_000), None);
        assert!(c.at_log(999).is_some());
        let off = BootClock {
            valid_after_ms: 0,
            boot_id: None,
        };
        assert_eq!(off.at_log(0), None, "0 disables the check");
    }

    #[test]
    fn boot_ids_are_lowercase_uuids() {
        assert!(valid_boot_id(BOOT));
        for bad in [
            "",
            "0F1E2D3C-4B5A-6978-8796-A5B4C3D2E1F0",
            "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f",
            "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f00",
            "0f1e2d3c4b5a-6978-8796-a5b4c3d2e1f0-",
            "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1g0",
            "'; DROP TABLE records; --xxxxxxxxxxx",
        ] {
            assert!(!valid_boot_id(bad), "{bad}");
        }
        // This machine's, when it has one, is one.
        if let Ok(s) = std::fs::read_to_string(BOOT_ID_PATH) {
            assert!(valid_boot_id(s.trim()), "{s:?}");
            assert_eq!(read_boot_id().as_deref(), Some(s.trim()));
        }
    }

    #[test]
    fn the_build_time_is_a_plausible_default() {
        assert_eq!(parse_ms("1764320000123"), 1_764_320_000_123);
        // After 2020-01-01 and not in the future of this test run.
        let build = std::hint::black_box(BUILD_UNIX_MS);
        assert!(build > 1_577_836_800_000, "{build}");
        assert!(build <= realtime_ms() + 60_000, "{build}");
    }
}
