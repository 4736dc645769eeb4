//! The modem stack: AT framing (`at`), the driver that gives AT meaning (`driver`), and per-family quirks
//! (`profile`). The simulator and the serial-port opener live beside them (`sim`, `tty`).

pub mod at;
pub mod driver;
pub mod profile;
