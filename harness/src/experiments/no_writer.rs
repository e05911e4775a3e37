//! The learner's reader alone, with no region of its name.

use std::time::Duration;

use super::{GraderError, lock_if_shared, make_absent, start, started};
use crate::ipc::Seen;
use crate::runner::Finished;
use crate::session::{Session, Who};

#[derive(Debug)]
pub struct NoWriterOutcome {
    pub run: Finished,
    /// A region of the reader's name existed after it ran: it created one.
    pub created: Option<Seen>,
}

/// The learner's reader, alone, with no region of its name.
pub fn run(session: &mut Session, timeout: Duration) -> Result<NoWriterOutcome, GraderError> {
    let name = session.platform_name(session.rubric().reader_name());
    let _locks = lock_if_shared(session, [name.as_str()])?;
    make_absent(session, &name)?;
    let mut spec = session.reader_spec(Who::Learner, &name, session.rubric().region.size);
    spec.timeout = timeout;
    let (spec, _) = session.prepare(spec, "reader", false);
    let run = start(spec)?.finish();
    let created = session.regions().peek(&name, 64);
    make_absent(session, &name)?;
    session.discard_dirs();
    started(&run, Who::Learner)?;
    Ok(NoWriterOutcome { run, created })
}
