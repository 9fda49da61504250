"""Pages in: PDF pages rendered, pages segmented into lines and words, layout.json (knows nothing of models)."""
