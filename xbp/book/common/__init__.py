"""The book's `common` package (chapters 5 and 6), built from xbp."""
