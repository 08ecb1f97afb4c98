"""Simulated participants: a client that walks the study server's flow as a person would.

It sits above both the server and the analysis: ``transport`` (HTTP or in-process),
``parse`` (reading a page's form), ``client`` (one participant's walk, filled by page
kind) and ``runs`` (many participants with known accuracies through a real server).
"""
