//! Prepared statements stepped directly on a connection sqlx opened, for the two paths
//! that touch every activity: bulk inserts and the scoring scan.
//!
//! Through sqlx every bound value and every column of every row is copied into an owned
//! value and handed across to its worker thread; at millions of rows that copying, not
//! SQLite, is most of the time. Here a statement is prepared once and stepped in place:
//! parameters are bound by reference and columns read as borrowed slices. The handle
//! comes from `SqliteConnection::lock_handle`, which parks sqlx's worker for as long as
//! it is held, so the connection (and its open transaction) is used by one party at a
//! time. libsqlite3-sys is the version sqlx links (one `links = "sqlite3"` per build).

use std::ffi::{CStr, c_int};
use std::marker::PhantomData;
use std::ptr::{self, NonNull};

use libsqlite3_sys as ffi;
use sqlx::sqlite::LockedSqliteHandle;

use super::StoreError;

/// A parameter bound by reference for one step.
#[derive(Clone, Copy, Debug)]
pub enum Param<'a> {
    Text(Option<&'a str>),
    Int(i64),
    MaybeInt(Option<i64>),
}

/// A connection's SQLite handle, locked away from sqlx's worker for the lifetime `'h`.
/// It may move to another thread (the parallel scan steps two connections on two
/// threads): sqlx opens connections in SQLite's multi-thread mode, where a connection
/// may be used from any thread as long as one thread at a time, which owning the only
/// `Handle` guarantees.
pub struct Handle<'h> {
    db: NonNull<ffi::sqlite3>,
    _locked: PhantomData<&'h mut ()>,
}

// SAFETY: see the type's doc; the handle is not Clone, so one thread uses it at a time.
unsafe impl Send for Handle<'_> {}

impl<'h> Handle<'h> {
    pub fn of(locked: &'h mut LockedSqliteHandle<'_>) -> Handle<'h> {
        Handle { db: locked.as_raw_handle(), _locked: PhantomData }
    }
}

/// One prepared statement on a locked handle; finalized on drop.
pub struct Statement<'h> {
    db: *mut ffi::sqlite3,
    stmt: NonNull<ffi::sqlite3_stmt>,
    _handle: PhantomData<&'h mut ()>,
}

fn error(db: *mut ffi::sqlite3, code: c_int, sql: &str) -> StoreError {
    // SAFETY: sqlite3_errmsg returns a NUL-terminated string owned by the handle.
    let message = unsafe { CStr::from_ptr(ffi::sqlite3_errmsg(db)) }.to_string_lossy().into_owned();
    if let Some(words) = super::open::code_words(code) {
        return StoreError::Sqlite(words.to_owned());
    }
    let statement: String = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    StoreError::Sqlite(format!("{message} (code {code}) in `{}`", statement.chars().take(80).collect::<String>()))
}

impl<'h> Statement<'h> {
    pub fn prepare(handle: &'h mut Handle<'_>, sql: &'static str) -> Result<Statement<'h>, StoreError> {
        let db = handle.db.as_ptr();
        let mut stmt = ptr::null_mut();
        // SAFETY: `db` is an open handle we hold exclusively; the SQL outlives the call.
        let code = unsafe {
            ffi::sqlite3_prepare_v3(db, sql.as_ptr().cast(), sql.len() as c_int, ffi::SQLITE_PREPARE_PERSISTENT, &mut stmt, ptr::null_mut())
        };
        match NonNull::new(stmt) {
            Some(stmt) if code == ffi::SQLITE_OK => Ok(Statement { db, stmt, _handle: PhantomData }),
            _ => Err(error(db, code, sql)),
        }
    }

    fn sql(&self) -> String {
        // SAFETY: sqlite3_sql returns the statement's own NUL-terminated text.
        unsafe { CStr::from_ptr(ffi::sqlite3_sql(self.stmt.as_ptr())) }.to_string_lossy().into_owned()
    }

    /// Binds `params` (1-based, in order) without copying them; they must outlive the
    /// steps that follow, which `execute` and `query` guarantee by holding the borrow.
    fn bind(&mut self, params: &[Param<'_>]) -> Result<(), StoreError> {
        let stmt = self.stmt.as_ptr();
        for (i, p) in params.iter().enumerate() {
            let at = i as c_int + 1;
            // SAFETY: the statement is live; text pointers stay valid until the reset
            // that ends this step (SQLITE_STATIC: SQLite reads them in place).
            let code = unsafe {
                match p {
                    Param::Int(v) | Param::MaybeInt(Some(v)) => ffi::sqlite3_bind_int64(stmt, at, *v),
                    Param::Text(None) | Param::MaybeInt(None) => ffi::sqlite3_bind_null(stmt, at),
                    Param::Text(Some(s)) => ffi::sqlite3_bind_text(stmt, at, s.as_ptr().cast(), s.len() as c_int, ffi::SQLITE_STATIC()),
                }
            };
            if code != ffi::SQLITE_OK {
                return Err(error(self.db, code, &self.sql()));
            }
        }
        Ok(())
    }

    /// Binds, or on a failure clears what was bound: no pointer into `params` may stay
    /// bound once the borrow ends.
    fn bind_or_reset(&mut self, params: &[Param<'_>]) -> Result<(), StoreError> {
        let bound = self.bind(params);
        if bound.is_err() {
            self.reset();
        }
        bound
    }

    fn reset(&mut self) {
        // SAFETY: resetting and clearing a live statement; errors were reported by step.
        unsafe {
            ffi::sqlite3_reset(self.stmt.as_ptr());
            ffi::sqlite3_clear_bindings(self.stmt.as_ptr());
        }
    }

    /// Runs the statement once with `params`; returns the rows it changed.
    pub fn execute(&mut self, params: &[Param<'_>]) -> Result<u64, StoreError> {
        self.bind_or_reset(params)?;
        // SAFETY: a live, bound statement on the handle we hold.
        let code = unsafe { ffi::sqlite3_step(self.stmt.as_ptr()) };
        let result = if code == ffi::SQLITE_DONE || code == ffi::SQLITE_ROW {
            // SAFETY: reading the handle's change counter.
            Ok(unsafe { ffi::sqlite3_changes64(self.db) } as u64)
        } else {
            Err(error(self.db, code, &self.sql()))
        };
        self.reset();
        result
    }

    /// Runs the statement with `params`, calling `each` with every row in turn.
    pub fn query(&mut self, params: &[Param<'_>], mut each: impl FnMut(&Row<'_>) -> Result<(), StoreError>) -> Result<(), StoreError> {
        self.bind_or_reset(params)?;
        let result = loop {
            // SAFETY: a live, bound statement on the handle we hold.
            let code = unsafe { ffi::sqlite3_step(self.stmt.as_ptr()) };
            match code {
                ffi::SQLITE_ROW => {
                    if let Err(e) = each(&Row { stmt: self.stmt, _statement: PhantomData }) {
                        break Err(e);
                    }
                }
                ffi::SQLITE_DONE => break Ok(()),
                _ => break Err(error(self.db, code, &self.sql())),
            }
        };
        self.reset();
        result
    }
}

impl Drop for Statement<'_> {
    fn drop(&mut self) {
        // SAFETY: finalizing the statement we prepared, once.
        unsafe { ffi::sqlite3_finalize(self.stmt.as_ptr()) };
    }
}

/// The current row of a query; its slices are valid only inside the callback.
pub struct Row<'s> {
    stmt: NonNull<ffi::sqlite3_stmt>,
    _statement: PhantomData<&'s ()>,
}

impl Row<'_> {
    pub fn int(&self, column: c_int) -> i64 {
        // SAFETY: the statement is positioned on a row.
        unsafe { ffi::sqlite3_column_int64(self.stmt.as_ptr(), column) }
    }

    /// A text column, `None` for NULL. The store writes only UTF-8 text; anything else
    /// reads as corrupt.
    pub fn text(&self, column: c_int) -> Result<Option<&str>, StoreError> {
        // SAFETY: the statement is positioned on a row; the pointer and length stay
        // valid until the next step, and `Row` cannot outlive the callback.
        unsafe {
            let p = ffi::sqlite3_column_text(self.stmt.as_ptr(), column);
            if p.is_null() {
                return Ok(None);
            }
            let len = ffi::sqlite3_column_bytes(self.stmt.as_ptr(), column) as usize;
            let bytes = std::slice::from_raw_parts(p, len);
            std::str::from_utf8(bytes).map(Some).map_err(|_| StoreError::Corrupt {
                what: "activities (text column)",
                value: String::from_utf8_lossy(bytes).into_owned(),
            })
        }
    }
}
