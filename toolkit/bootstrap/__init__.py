"""New-host bootstrap: from a bare Debian host or an EC2 instance id to a converged, verified fleet member."""
