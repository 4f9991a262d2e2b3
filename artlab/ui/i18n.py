"""English and Chinese texts of the app.

Gradio's `gr.I18n` translates static texts by the browser's language; the kiosk's
English/中文 switch re-labels the main components from the same table at run time
(Gradio has no public call to change the page's locale from Python).
"""

import gradio as gr

from artlab.labels import display_name

LANGS = {"English": "en", "中文": "zh"}

TEXTS = {
    "en": {
        "title": "ArtLab",
        "tagline": "A deep-learning lens on art: style, subject, and what the machine sees.",
        "tab_artwork": "Artwork", "tab_text": "Text", "tab_gallery": "Gallery", "tab_create": "Create",
        "tab_train": "Train", "tab_about": "About",
        "artwork_in": "Your artwork (upload, paste or camera)",
        "analyze": "Look at this artwork",
        "style": "Style", "subject": "Subject", "your_model": "Your model",
        "reconstruction": "Rebuilt by the autoencoder",
        "ae_input": "What the autoencoder saw",
        "gradcam": "Where the model looked (Grad-CAM, top style)",
        "show_gradcam": "Show where the model looked",
        "similar": "Similar works in the gallery",
        "add": "Add to gallery", "add_title": "Title", "add_artist": "Artist", "add_year": "Year",
        "text_in": "A title or a description",
        "text_go": "Read this text",
        "text_recon": "What the text autoencoder rebuilt",
        "text_matches": "Gallery works with the closest labels",
        "filter_style": "Style", "filter_subject": "Subject", "search": "Search titles",
        "any": "Any", "grid": "The collection",
        "work_image": "The work", "work_similar": "Works like this one",
        "create_a": "First work", "create_b": "Second work", "frames": "Frames",
        "morph": "Walk between them", "surprise": "Surprise me", "strip": "Generated frames",
        "position": "Position on the path", "frame": "Generated image",
        "language": "Language",
        "need_picture": "Please upload, paste or photograph an artwork first.",
        "upload_unreadable": "The upload could not be read; please try again.",
        "models_failed": "The models could not be loaded: {reason}",
        "psnr_sentence": "**{psnr:.1f} dB** PSNR: how faithfully the autoencoder rebuilt the picture "
                         "from a code 48 times smaller.",
        "kiosk_no_adding": "Adding works is turned off on this kiosk.",
        "added": "Added to the gallery.", "already_added": "This picture is already in the gallery.",
        "gallery_empty": "### The gallery is empty\nAdd works with `python -m artlab index FOLDER "
                         "[--meta works.csv]`, or analyse a picture on the **Artwork** tab and press "
                         "**Add to gallery**.",
        "no_match": "No works match these filters.",
        "shown": "{shown} of {total} works shown.",
        "stale": "{stale} of them were analysed by an earlier model and are left out of similar works "
                 "until `python -m artlab index --refresh` re-analyses them.",
        "pick_work": "Pick a work first.", "work_gone": "That work is no longer in the gallery.",
        "added_on": "Added {date}", "work_psnr": " · reconstruction {psnr:.1f} dB",
        "image_side_works": "The image side of ArtLab works as usual.",
        "need_two": "Choose two works (upload them, or press Surprise me).",
        "need_two_in_gallery": "The gallery needs at least two works for a surprise: add some first.",
    },
    "zh": {
        "title": "ArtLab 艺术实验室",
        "tagline": "用深度学习看艺术：风格、题材，以及机器看到了什么。",
        "tab_artwork": "作品", "tab_text": "文字", "tab_gallery": "画廊", "tab_create": "创作",
        "tab_train": "训练", "tab_about": "关于",
        "artwork_in": "您的作品（上传、粘贴或拍照）",
        "analyze": "分析这件作品",
        "style": "风格", "subject": "题材", "your_model": "您的模型",
        "reconstruction": "自编码器重建",
        "ae_input": "自编码器的输入",
        "gradcam": "模型关注的区域（Grad-CAM，最可能的风格）",
        "show_gradcam": "显示模型关注的区域",
        "similar": "画廊中的相似作品",
        "add": "加入画廊", "add_title": "标题", "add_artist": "艺术家", "add_year": "年份",
        "text_in": "标题或描述",
        "text_go": "分析文字",
        "text_recon": "文本自编码器的重建",
        "text_matches": "标签最接近的画廊作品",
        "filter_style": "风格", "filter_subject": "题材", "search": "搜索标题",
        "any": "全部", "grid": "藏品",
        "work_image": "作品", "work_similar": "相似作品",
        "create_a": "第一件作品", "create_b": "第二件作品", "frames": "帧数",
        "morph": "在两者之间漫步", "surprise": "给我惊喜", "strip": "生成的画面",
        "position": "路径上的位置", "frame": "生成的图像",
        "language": "语言",
        "need_picture": "请先上传、粘贴或拍摄一件作品。",
        "upload_unreadable": "无法读取上传的文件，请重试。",
        "models_failed": "模型无法加载：{reason}",
        "psnr_sentence": "**{psnr:.1f} dB** PSNR：自编码器从小 48 倍的编码中重建图像的忠实程度。",
        "kiosk_no_adding": "此展台不能添加作品。",
        "added": "已加入画廊。", "already_added": "这件作品已在画廊中。",
        "gallery_empty": "### 画廊还是空的\n用 `python -m artlab index 文件夹 [--meta works.csv]` 添加作品，"
                         "或在**作品**页分析一张图片后按**加入画廊**。",
        "no_match": "没有符合条件的作品。",
        "shown": "显示 {shown} / {total} 件作品。",
        "stale": "其中 {stale} 件由旧版模型分析，暂不参与相似作品检索；请运行 `python -m artlab index --refresh`。",
        "pick_work": "请先选择一件作品。", "work_gone": "这件作品已不在画廊中。",
        "added_on": "加入于 {date}", "work_psnr": " · 重建 {psnr:.1f} dB",
        "image_side_works": "图像功能照常可用。",
        "need_two": "请选择两件作品（上传，或按“给我惊喜”）。",
        "need_two_in_gallery": "画廊至少需要两件作品才能给您惊喜：请先添加作品。",
    },
}


def t(key: str, lang: str = "en") -> str:
    return TEXTS.get(lang, TEXTS["en"]).get(key, TEXTS["en"].get(key, key))


def gradio_i18n() -> gr.I18n:
    return gr.I18n(**TEXTS)


def label_scores(ranked, lang: str = "en") -> dict[str, float]:
    """[[label, p], ...] -> {display name: p} for gr.Label."""
    return {display_name(name, lang): float(p) for name, p in ranked}
