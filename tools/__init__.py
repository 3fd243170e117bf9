"""Developer tools that are not part of the installed disttorch package."""
