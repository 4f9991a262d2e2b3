"""Gallery commands: index a folder of artworks into the gallery store."""

import argparse
import sys
from pathlib import Path


def register(sub):
    p = sub.add_parser("index", help="add a folder of images to the gallery (skips ones already there)")
    p.add_argument("folder", type=Path, metavar="DIR", nargs="?")
    p.add_argument("--refresh", action="store_true",
                   help="re-analyse the works an earlier model analysed (after new weights), then index DIR if given")
    p.add_argument("--meta", type=Path, metavar="CSV",
                   help="CSV with a 'file' column (name or path relative to DIR) and optional title, artist, year")
    p.add_argument("--gallery", type=Path, metavar="PATH",
                   help="gallery folder (default: $ARTLAB_GALLERY or ~/.local/share/artlab/gallery)")
    p.add_argument("--weights", help="folder or .safetensors file (default: the shipped weights)")
    p.add_argument("--batch", type=int, help="images per model batch and per transaction (default 32; 256 with --bulk)")
    p.add_argument("--bulk", action=argparse.BooleanOptionalAction, default=None,
                   help="the pipelined bulk indexer (GPU decoding, read-ahead threads); default: on with a CUDA GPU")
    p.add_argument("--workers", type=int, default=8, help="with --bulk: reader and thumbnail threads")
    p.add_argument("--device", help="cuda, mps or cpu (default: the best available)")
    p.add_argument("--limit", type=int, metavar="N",
                   help="index at most N images of DIR, spread evenly over it (every class folder gets some)")
    p.add_argument("--psnr", action="store_true",
                   help="also run the autoencoder and store each work's reconstruction PSNR (about 20%% slower)")
    p.set_defaults(run=run_index)


def run_index(args) -> int:
    from artlab.checkpoints import WeightsError
    from artlab.inference.image import ArtModels
    from artlab.store.gallery import Gallery

    meta = _read_arguments(args)
    if meta is None:
        return 2
    if args.folder is not None and args.bulk is not False and not args.psnr:
        from artlab.bulk import preload_decoder
        preload_decoder()   # the decoder's slow import runs beside the model loading
    try:
        models = ArtModels(args.weights, args.device, autoencoder=args.psnr)
    except WeightsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    gallery = Gallery(args.gallery)
    try:
        _refresh_or_say_stale(gallery, models, args.refresh)
        if args.folder is not None:
            _index_folder(gallery, models, args, meta)
    finally:
        gallery.close()
    return 0


def _read_arguments(args) -> dict | None:
    """The metadata CSV's contents ({} without one), or None after saying what is wrong."""
    from artlab.indexing import read_meta

    if args.folder is None and not args.refresh:
        print("error: give a folder to index (or --refresh)", file=sys.stderr)
        return None
    if args.folder is not None and not args.folder.is_dir():
        print(f"error: {args.folder}: not a folder", file=sys.stderr)
        return None
    try:
        return read_meta(args.meta) if args.meta else {}
    except (OSError, ValueError, UnicodeDecodeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return None


def _refresh_or_say_stale(gallery, models, refresh_asked: bool) -> None:
    from tqdm import tqdm

    from artlab.indexing import refresh

    stale = gallery.other_model_count(models.model_id)
    if refresh_asked and stale:
        with tqdm(total=stale, unit="img", desc="re-analysing") as bar:
            report = refresh(gallery, models, progress=bar.update)
        for error in report.errors:
            print(f"not refreshed: {error}", file=sys.stderr)
        print(f"{report.added} works re-analysed with the current model")
    elif stale:
        print(f"note: {stale} works were analysed by an earlier model and are left out of similar works; "
              f"`python -m artlab index --refresh` re-analyses them", file=sys.stderr)


def _spread(paths: list, limit: int | None) -> list:
    """At most `limit` of `paths`, evenly spaced (sorted paths: every class folder gets its share)."""
    if not limit or limit <= 0 or len(paths) <= limit:
        return paths
    return [paths[i * len(paths) // limit] for i in range(limit)]


def _index_folder(gallery, models, args, meta: dict) -> None:
    from tqdm import tqdm

    from artlab.images import list_images
    from artlab.indexing import index, use_bulk

    paths = _spread(list_images(args.folder), args.limit)
    bulk = use_bulk(models, args.bulk, args.psnr)
    if args.bulk and args.psnr:
        print("note: --psnr needs the autoencoder, which the bulk indexer does not run; using the ordinary path",
              file=sys.stderr)
    with tqdm(total=len(paths), unit="img", desc="indexing (bulk)" if bulk else "indexing") as bar:
        report = index(gallery, models, paths, root=args.folder, meta=meta, bulk=bulk, batch_size=args.batch,
                       workers=args.workers, progress=bar.update, reconstruct=args.psnr)
    for error in report.errors:
        print(f"skipped: {error}", file=sys.stderr)
    print(f"{report.added} added, {report.skipped} already in the gallery, {len(report.errors)} unreadable; "
          f"the gallery at {gallery.folder} holds {gallery.count()} works")
