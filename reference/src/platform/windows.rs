//! Windows named shared memory: `CreateFileMappingW` backed by the paging
//! file (no file of our own), `OpenFileMappingW`, `MapViewOfFile`.
//!
//! Unlike POSIX, a Windows mapping object lives only as long as some handle
//! to it is open: when the writer closes its last handle the name is gone.
//! That is why the writer must hold the region until the reader is done.

use std::ffi::c_void;
use std::ptr;

use windows_sys::Win32::Foundation::{
    CloseHandle, ERROR_ALREADY_EXISTS, ERROR_FILE_NOT_FOUND, GetLastError, HANDLE,
    INVALID_HANDLE_VALUE,
};
use windows_sys::Win32::System::Memory::{
    CreateFileMappingW, FILE_MAP_ALL_ACCESS, FILE_MAP_READ, MEMORY_BASIC_INFORMATION,
    MEMORY_MAPPED_VIEW_ADDRESS, MapViewOfFile, OpenFileMappingW, PAGE_READWRITE, UnmapViewOfFile,
    VirtualQuery,
};

use crate::error::{Error, Result};

/// The lab's region name on Windows: a name in this session's namespace.
pub const DEFAULT_NAME: &str = "Local\\MySharedMemory";

/// A Windows mapping name ([`crate::names::is_windows`]).
pub fn check_name(name: &str) -> Result<()> {
    if crate::names::is_windows(name) {
        Ok(())
    } else {
        Err(Error::usage(format!(
            "invalid region name {name:?}: {}",
            crate::names::WINDOWS_RULE
        )))
    }
}

/// A NUL-terminated UTF-16 copy of `name`, as the `...W` functions want.
fn wide(name: &str) -> Vec<u16> {
    name.encode_utf16().chain(Some(0)).collect()
}

fn last_error(what: &str) -> Error {
    Error::os(what, std::io::Error::last_os_error())
}

/// A mapping object and one view of it; both are released on drop.
struct View {
    handle: HANDLE,
    addr: *mut c_void,
    len: usize,
}

impl View {
    /// Maps `len` bytes (0: all of it) of the mapping object `handle`,
    /// taking ownership of the handle whatever happens.
    fn map(handle: HANDLE, access: u32, len: usize) -> Result<Self> {
        // SAFETY: `handle` is a valid mapping handle we own.
        let addr = unsafe { MapViewOfFile(handle, access, 0, 0, len) }.Value;
        if addr.is_null() {
            let err = last_error("cannot map a view of the region (MapViewOfFile)");
            // SAFETY: closing the handle we own, once.
            unsafe { CloseHandle(handle) };
            return Err(err);
        }
        let len = if len == 0 { view_size(addr) } else { len };
        Ok(View { handle, addr, len })
    }
}

impl Drop for View {
    fn drop(&mut self) {
        // SAFETY: unmapping the view and closing the handle we own, once.
        unsafe {
            UnmapViewOfFile(MEMORY_MAPPED_VIEW_ADDRESS { Value: self.addr });
            CloseHandle(self.handle);
        }
    }
}

/// How much a view spans. Windows rounds it up to whole pages, so this is
/// the region's size rounded up to the page size.
fn view_size(addr: *mut c_void) -> usize {
    let mut info: MEMORY_BASIC_INFORMATION = unsafe { std::mem::zeroed() };
    // SAFETY: `info` is a properly sized out-buffer.
    let n = unsafe { VirtualQuery(addr, &mut info, size_of::<MEMORY_BASIC_INFORMATION>()) };
    if n == 0 { 0 } else { info.RegionSize }
}

/// The writer's side: a region this process created and holds mapped.
pub struct WriterRegion {
    view: View,
}

impl WriterRegion {
    /// Creates the region `name` of `size` bytes, backed by the paging file,
    /// and maps it read-write. Refuses a region that already exists.
    pub fn create(name: &str, size: u64) -> Result<Self> {
        check_name(name)?;
        let len = usize::try_from(size).map_err(|_| Error::usage("SIZE is too large"))?;
        let wname = wide(name);
        // INVALID_HANDLE_VALUE: no file of ours, the paging file backs it. The
        // size is given here, so no separate "ftruncate" step exists.
        let handle = unsafe {
            CreateFileMappingW(
                INVALID_HANDLE_VALUE,
                ptr::null(),
                PAGE_READWRITE,
                (size >> 32) as u32,
                size as u32,
                wname.as_ptr(),
            )
        };
        if handle.is_null() {
            return Err(last_error(&format!("cannot create region {name}")));
        }
        // An existing object of that name is handed back with this error:
        // let go of it rather than adopt a stranger's region.
        if unsafe { GetLastError() } == ERROR_ALREADY_EXISTS {
            unsafe { CloseHandle(handle) };
            return Err(Error::new(format!(
                "region {name} already exists: another writer holds it"
            )));
        }
        let view = View::map(handle, FILE_MAP_ALL_ACCESS, len)?;
        Ok(WriterRegion { view })
    }

    /// The region's bytes, writable and shared with every view of it.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: the view spans `len` writable bytes for as long as it lives.
        unsafe { std::slice::from_raw_parts_mut(self.view.addr.cast(), self.view.len) }
    }

    /// Unmaps the view and closes the handle. If it was the last handle, the
    /// region and its name are gone.
    pub fn remove(self) -> Result<()> {
        drop(self.view);
        Ok(())
    }
}

/// The reader's side: an existing region mapped read-only.
pub struct ReaderRegion {
    view: View,
    len: usize,
}

impl ReaderRegion {
    /// Opens the existing region `name` and maps it read-only; it must span
    /// at least `size` bytes (Windows only tells its size to the page).
    pub fn open(name: &str, size: u64) -> Result<Self> {
        check_name(name)?;
        let len = usize::try_from(size).map_err(|_| Error::usage("SIZE is too large"))?;
        let wname = wide(name);
        // OpenFileMapping never creates: no region, no handle.
        let handle = unsafe { OpenFileMappingW(FILE_MAP_READ, 0, wname.as_ptr()) };
        if handle.is_null() {
            if unsafe { GetLastError() } == ERROR_FILE_NOT_FOUND {
                return Err(Error::new(format!(
                    "no shared memory region named {name}: start the writer first"
                )));
            }
            return Err(last_error(&format!("cannot open region {name}")));
        }
        let view = View::map(handle, FILE_MAP_READ, 0)?;
        if view.len < len {
            return Err(Error::new(format!(
                "region {name} is {} bytes, smaller than the {size} bytes expected",
                view.len
            )));
        }
        Ok(ReaderRegion { view, len })
    }

    /// The region's first `size` bytes, as the writer left them.
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: the view spans at least `len` readable bytes while it lives.
        unsafe { std::slice::from_raw_parts(self.view.addr.cast(), self.len) }
    }
}
