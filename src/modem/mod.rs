//! The modem stack: AT framing (`at`), the driver that gives AT meaning (`driver`), per-family quirks
//! (`profile`) and the serial line opener (`tty`).

pub mod at;
pub mod driver;
pub mod profile;
pub mod tty;
