"""Tests of deskd_client against a real deskd."""
