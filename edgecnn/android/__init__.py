"""android"""
