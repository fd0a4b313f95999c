"""Images and layers: the store, OCI and Docker archives, registry pulls, safe unpacking."""
