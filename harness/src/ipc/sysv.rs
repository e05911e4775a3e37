//! System V IPC objects (segments, semaphore sets, message queues) left by
//! learner code. At the full level each process has an IPC namespace of
//! its own and they die with it; at the uid level learner code shares the
//! machine's, so what its uid owns is removed between experiments and
//! after the grading, as its files in /dev/shm are.

/// Removes every System V object owned by `uid`; returns how many.
pub fn remove_owned_by(uid: u32) -> usize {
    let mut removed = 0;
    for (table, remove) in [
        ("shm", remove_segment as fn(i32) -> bool),
        ("sem", remove_semaphores),
        ("msg", remove_queue),
    ] {
        for id in owned_by(table, uid) {
            if remove(id) {
                removed += 1;
            }
        }
    }
    removed
}

/// The ids in /proc/sysvipc/`table` whose owner is `uid`.
fn owned_by(table: &str, uid: u32) -> Vec<i32> {
    let Ok(text) = std::fs::read_to_string(format!("/proc/sysvipc/{table}")) else {
        return Vec::new();
    };
    let mut lines = text.lines();
    let Some(header) = lines.next() else {
        return Vec::new();
    };
    let columns: Vec<&str> = header.split_whitespace().collect();
    let at = |name: &str| columns.iter().position(|c| *c == name);
    let id_column = at(match table {
        "shm" => "shmid",
        "sem" => "semid",
        _ => "msqid",
    });
    let (Some(id_at), Some(uid_at)) = (id_column, at("uid")) else {
        return Vec::new();
    };
    lines
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let owner: u32 = fields.get(uid_at)?.parse().ok()?;
            (owner == uid).then(|| fields.get(id_at)?.parse().ok())?
        })
        .collect()
}

fn remove_segment(id: i32) -> bool {
    // SAFETY: IPC_RMID takes no buffer.
    unsafe { libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()) == 0 }
}

fn remove_semaphores(id: i32) -> bool {
    // SAFETY: IPC_RMID ignores the semaphore number and takes no argument.
    unsafe { libc::semctl(id, 0, libc::IPC_RMID) == 0 }
}

fn remove_queue(id: i32) -> bool {
    // SAFETY: IPC_RMID takes no buffer.
    unsafe { libc::msgctl(id, libc::IPC_RMID, std::ptr::null_mut()) == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_of_one_owner_are_found_and_removed() {
        // SAFETY: a private segment and semaphore set of this test's own.
        let (shm, sem) = unsafe {
            (
                libc::shmget(libc::IPC_PRIVATE, 4096, libc::IPC_CREAT | 0o600),
                libc::semget(libc::IPC_PRIVATE, 1, libc::IPC_CREAT | 0o600),
            )
        };
        assert!(shm >= 0 && sem >= 0);
        let me = rustix::process::geteuid().as_raw();
        assert!(owned_by("shm", me).contains(&shm));
        assert!(owned_by("sem", me).contains(&sem));
        // Only what this test made is removed by id here (the machine may
        // hold other objects of this user).
        assert!(remove_segment(shm) && remove_semaphores(sem));
        assert!(!owned_by("shm", me).contains(&shm));
        assert!(!owned_by("sem", me).contains(&sem));
    }
}
