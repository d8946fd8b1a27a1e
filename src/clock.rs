//! Timestamps on boards without a real-time clock (docs/reference.md, the wire, timestamps).
//!
//! A record logged while the wall clock is earlier than `clock.valid_after_unix_ms` keeps the
//! boot clock and the boot id; when it is read for sending, its `ts_ms` is repaired if the wall
//! clock has become valid in the same boot. [`ClockMark`] is what the envelope then says.

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
