//! NTU RGB+D importer.
