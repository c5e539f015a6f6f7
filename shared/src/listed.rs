//! `listed_enum!`: a closed set of names (metrics, error codes, scopes, outcomes) and the list of
//! all of them, written once.

/// Declares a fieldless enum together with `ALL`, every variant in declaration order. Docs,
/// tables and checks iterate `ALL`; writing it from the same tokens as the enum means a new
/// variant cannot be left out of it.
#[macro_export]
macro_rules! listed_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $($(#[$variant_meta:meta])* $variant:ident),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        $vis enum $name {
            $($(#[$variant_meta])* $variant),+
        }

        impl $name {
            /// Every variant, in declaration order (written by `listed_enum!`, so none is missed).
            pub const ALL: [$name; [$(stringify!($variant)),+].len()] = [$($name::$variant),+];
        }
    };
}

#[cfg(test)]
mod tests {
    crate::listed_enum! {
        /// A test enum.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        enum Three {
            /// One.
            A,
            B,
            /// Three.
            C,
        }
    }

    #[test]
    fn all_holds_every_variant_in_declaration_order() {
        assert_eq!(Three::ALL, [Three::A, Three::B, Three::C]);
    }
}
