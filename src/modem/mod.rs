//! The modem stack: AT framing (`at`), the driver that gives AT meaning (`driver`), per-family quirks
//! (`profile`), the serial line opener (`tty`) and the modem simulator (`sim`).

pub mod at;
pub mod driver;
pub mod profile;
pub mod sim;
pub mod tty;
