//! The argument and environment lists of an exec, read in place: a C array of string pointers
//! in the preload, a slice in `netcon-ctl`.

use core::cell::Cell;
use core::ffi::{CStr, c_char};
use core::marker::PhantomData;

/// A list of NUL-terminated strings, such as exec's `argv` or `envp`.
pub trait StringList {
    /// Returns the number of strings.
    fn len(&self) -> usize;

    /// Returns the string at `index`, or `None` past the end.
    fn get(&self, index: usize) -> Option<&CStr>;

    /// Returns whether the list has no string.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl StringList for &[&CStr] {
    fn len(&self) -> usize {
        <[&CStr]>::len(self)
    }

    fn get(&self, index: usize) -> Option<&CStr> {
        <[&CStr]>::get(self, index).copied()
    }
}

impl<const N: usize> StringList for [&CStr; N] {
    fn len(&self) -> usize {
        N
    }

    fn get(&self, index: usize) -> Option<&CStr> {
        <[&CStr]>::get(self, index).copied()
    }
}

/// A null-terminated C array of string pointers, as exec takes `argv` and `envp`. A null
/// array is empty, as Linux reads it. The array is first read when a string is requested,
/// so a check that needs no argument reads none.
#[derive(Clone, Debug)]
pub struct CStringArray<'a> {
    pointers: *const *const c_char,
    /// The number of strings, counted on first use.
    len: Cell<Option<usize>>,
    strings: PhantomData<&'a CStr>,
}

impl<'a> CStringArray<'a> {
    /// Wraps `pointers` without reading it.
    ///
    /// # Safety
    /// `pointers` must be null or a null-terminated array of NUL-terminated strings, and the
    /// array and strings must stay unchanged for `'a`.
    pub unsafe fn new(pointers: *const *const c_char) -> CStringArray<'a> {
        CStringArray {
            pointers,
            len: Cell::new(None),
            strings: PhantomData,
        }
    }
}

impl StringList for CStringArray<'_> {
    fn len(&self) -> usize {
        if let Some(len) = self.len.get() {
            return len;
        }
        let mut len = 0;
        if !self.pointers.is_null() {
            // SAFETY: the array is null-terminated (new's contract), so every index up to the
            // null is valid.
            while !unsafe { *self.pointers.add(len) }.is_null() {
                len += 1;
            }
        }
        self.len.set(Some(len));
        len
    }

    fn get(&self, index: usize) -> Option<&CStr> {
        if index >= self.len() {
            return None;
        }
        // SAFETY: index is below the count, and the strings stay unchanged for the array's
        // lifetime.
        Some(unsafe { CStr::from_ptr(*self.pointers.add(index)) })
    }
}

/// An empty list, for a program started without known arguments.
pub const NO_STRINGS: &[&CStr; 0] = &[];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c_array_read_in_place() {
        let strings = [c"ld.so".as_ptr(), c"--list".as_ptr(), core::ptr::null()];
        // SAFETY: strings is a null-terminated array of static strings.
        let array = unsafe { CStringArray::new(strings.as_ptr()) };
        assert_eq!(array.len(), 2);
        assert_eq!(array.get(1), Some(c"--list"));
        assert_eq!(array.get(2), None);
    }

    #[test]
    fn null_array_is_empty() {
        // SAFETY: a null array is allowed.
        let array = unsafe { CStringArray::new(core::ptr::null()) };
        assert!(array.is_empty());
        assert_eq!(array.get(0), None);
    }
}
