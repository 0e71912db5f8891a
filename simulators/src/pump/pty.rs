//! One pseudo-terminal pair: the simulator keeps the master and its own
//! handle on the slave (so the master never sees a hang-up while no driver
//! has the port open); the driver opens the slave by path.
//!
//! The pair comes from tokio-serial, which opens it raw (no echo, no CR/LF
//! translation) and registers it with the runtime.

use std::io;
use std::path::{Path, PathBuf};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_serial::{SerialPort, SerialStream};

#[derive(Debug)]
pub(crate) struct Pty {
    master: SerialStream,
    _slave: SerialStream,
    /// `/dev/pts/N`.
    pub(crate) slave_path: PathBuf,
}

impl Pty {
    /// Opens a raw pty pair; with `link`, points that symlink at the slave
    /// (atomically, so a driver never sees a half-made link).
    pub(crate) fn open(link: Option<&Path>) -> io::Result<Self> {
        let (master, slave) = SerialStream::pair()?;
        let slave_path = PathBuf::from(
            slave
                .name()
                .ok_or_else(|| io::Error::other("the pty slave has no name"))?,
        );
        if let Some(link) = link {
            let tmp = link.with_extension("wardgate-sim-tmp");
            let _ = std::fs::remove_file(&tmp);
            std::os::unix::fs::symlink(&slave_path, &tmp)?;
            std::fs::rename(&tmp, link)?;
        }
        Ok(Self {
            master,
            _slave: slave,
            slave_path,
        })
    }

    pub(crate) async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.master.read(buf).await
    }

    pub(crate) async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.master.write_all(bytes).await
    }
}
