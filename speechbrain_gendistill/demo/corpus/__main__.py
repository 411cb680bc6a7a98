"""``python -m speechbrain_gendistill.demo.corpus``: builds the synthetic corpus (see ``synthesis.main``)."""

from speechbrain_gendistill.demo.corpus.synthesis import main

if __name__ == "__main__":
    main()
