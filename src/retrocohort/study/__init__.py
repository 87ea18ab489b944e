"""retrocohort.study"""
