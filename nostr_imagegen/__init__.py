"""nostr_imagegen."""
