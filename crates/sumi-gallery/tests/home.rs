//! Where the gallery lives by default (own test binary: it sets a process-wide variable).

#[test]
fn sumi_home_relocates_the_gallery() {
    let dir = tempfile::tempdir().unwrap();
    std::env::set_var(sumi_gallery::HOME_ENV, dir.path());
    assert_eq!(sumi_gallery::default_home().unwrap(), dir.path());
    std::env::set_var(sumi_gallery::HOME_ENV, "");
    let fallback = sumi_gallery::default_home();
    std::env::remove_var(sumi_gallery::HOME_ENV);
    if let Ok(path) = fallback {
        assert_ne!(path, dir.path());
        assert!(path.to_string_lossy().to_lowercase().contains("sumi"));
    }
}
