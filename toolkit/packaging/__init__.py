"""Build the artifacts that roles install (``toolkit artifact ...``), kept in the state directory's artifacts/.

``maven.py`` gathers jars with ``mvn`` from a generated pom; ``cassandra.py`` is the recipe that turns
them into a Cassandra tarball. Nothing here writes to the terminal: the CLI prints the results.
"""
