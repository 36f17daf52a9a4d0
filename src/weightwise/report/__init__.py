"""Reports: terminal tables now; HTML/Markdown writers and plots come with the bench issue."""
