//! Per-user and per-resource state of feature modules, one value per type.
//!
//! A module keeps what it needs about a user (the roster cache, the blocklist, archive
//! preferences …) or about one of the user's resources (carbons enabled, roster requested …) in a
//! type of its own that it does not export: only that module can name the type, so only it can
//! read or change the value. The core never looks inside.
//!
//! A plain vector searched by `TypeId`: a user carries a handful of values at most, which a scan
//! finds faster than a hash map hashes, and an empty one allocates nothing — most resources of
//! idle users carry none.

use std::any::{Any, TypeId};

#[derive(Default)]
pub(crate) struct Extensions(Vec<(TypeId, Box<dyn Any + Send>)>);

impl Extensions {
    pub fn get<T: Any + Send>(&self) -> Option<&T> {
        self.0.iter().find(|(id, _)| *id == TypeId::of::<T>()).and_then(|(_, value)| value.downcast_ref())
    }

    pub fn get_mut<T: Any + Send>(&mut self) -> Option<&mut T> {
        self.0.iter_mut().find(|(id, _)| *id == TypeId::of::<T>()).and_then(|(_, value)| value.downcast_mut())
    }

    /// The value of type `T`, inserted from `make` first if there is none.
    pub fn get_or_insert_with<T: Any + Send>(&mut self, make: impl FnOnce() -> T) -> &mut T {
        let index = match self.0.iter().position(|(id, _)| *id == TypeId::of::<T>()) {
            Some(index) => index,
            None => {
                self.0.push((TypeId::of::<T>(), Box::new(make())));
                self.0.len() - 1
            }
        };
        match self.0[index].1.downcast_mut() {
            Some(value) => value,
            // Unreachable: the slot was found or made for exactly this type.
            None => unreachable!("extension slot holds another type"),
        }
    }

    pub fn insert<T: Any + Send>(&mut self, value: T) {
        match self.get_mut::<T>() {
            Some(slot) => *slot = value,
            None => self.0.push((TypeId::of::<T>(), Box::new(value))),
        }
    }

    pub fn remove<T: Any + Send>(&mut self) -> Option<T> {
        let index = self.0.iter().position(|(id, _)| *id == TypeId::of::<T>())?;
        self.0.swap_remove(index).1.downcast().ok().map(|value| *value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct Carbons(bool);
    #[derive(Debug, PartialEq, Default)]
    struct Interest(u8);

    #[test]
    fn one_value_per_type() {
        let mut ext = Extensions::default();
        assert_eq!(ext.get::<Carbons>(), None);
        ext.insert(Carbons(true));
        ext.get_or_insert_with(Interest::default).0 += 2;
        ext.get_or_insert_with(Interest::default).0 += 1;
        assert_eq!(ext.get::<Carbons>(), Some(&Carbons(true)));
        assert_eq!(ext.get::<Interest>(), Some(&Interest(3)));
        ext.insert(Carbons(false));
        assert_eq!(ext.remove::<Carbons>(), Some(Carbons(false)));
        assert_eq!(ext.get::<Carbons>(), None);
        assert_eq!(ext.get::<Interest>(), Some(&Interest(3)));
    }
}
