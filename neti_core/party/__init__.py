"""The party at fleet scale: this host's entries (:mod:`.mirror`), everyone's (:mod:`.view`)."""
