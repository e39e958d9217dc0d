from apps.knowledge.chunking import (
    MAX_CHUNK_TOKENS,
    article_chunks,
    estimate_tokens,
    markdown_sections,
    readable_lines,
)


def test_each_faq_question_is_its_own_chunk_and_duplicates_are_dropped():
    drafts = article_chunks(
        "退款多久到账？", "1-3 个工作日。", ["退款多久到账？", "钱什么时候退回来"], kind="faq"
    )
    assert [(d.kind, d.text) for d in drafts] == [
        ("question", "退款多久到账？"),
        ("question", "钱什么时候退回来"),
        ("body", "1-3 个工作日。"),
    ]
    assert drafts[-1].embedding_text() == "退款多久到账？\n1-3 个工作日。"


def test_markdown_sections_keep_their_heading_path_and_drop_markup():
    body = "Intro **bold** [link](http://x).\n\n## Steps\n1. One\n### Detail\n- Two\n## End\nBye"
    assert markdown_sections(body) == [
        ([], "Intro bold link."),
        (["Steps"], "One"),
        (["Steps", "Detail"], "Two"),
        (["End"], "Bye"),
    ]


def test_long_chinese_guide_splits_on_sentences_with_overlap():
    sentences = [f"第{i}步，请在订单详情页确认收货地址和联系电话是否正确。" for i in range(40)]
    drafts = article_chunks("下单指南", "## 步骤\n" + "".join(sentences), [])
    body = [d for d in drafts if d.kind == "body"]
    assert len(body) > 1
    for draft in body:
        assert estimate_tokens(draft.text) <= MAX_CHUNK_TOKENS
        assert draft.text.endswith("。")  # never cut inside a sentence
        assert draft.heading == "下单指南 > 步骤"
    # The last sentence of one chunk opens the next.
    assert body[1].text.startswith(body[0].text.split("。")[-2] + "。")
    joined = "".join(d.text for d in body)
    assert all(s in joined for s in sentences)


def test_long_english_guide_splits_between_sentences():
    text = " ".join(f"Step {i} asks you to check the delivery address." for i in range(80))
    body = [d for d in article_chunks("Guide", text, []) if d.kind == "body"]
    assert len(body) > 1
    assert all(d.text.endswith(".") for d in body)


def test_faq_answer_stays_one_chunk_with_its_question_however_long():
    answer = "## Details\n" + " ".join(f"Sentence {i} about refunds." for i in range(200))
    drafts = article_chunks("How do refunds work?", answer, [], kind="faq")
    assert [d.kind for d in drafts] == ["question", "body"]
    assert drafts[1].embedding_text().startswith("How do refunds work?\nDetails")
    assert "Sentence 199" in drafts[1].text
    assert drafts[0].is_question and not drafts[1].is_question


def test_a_guides_list_items_keep_their_line_breaks():
    body = (
        "## 各等级权益\n\n**金卡会员**\n- 每单1.5倍积分\n- ¥50生日券\n\n"
        "## Steps\n- Open My Orders\n- Tap Pay now"
    )
    texts = [d.text for d in article_chunks("会员权益", body, []) if d.kind == "body"]
    # Run together, Chinese items would read "金卡会员每单1.5倍积分¥50生日券".
    assert texts == ["金卡会员\n每单1.5倍积分\n¥50生日券", "Open My Orders\nTap Pay now"]


def test_a_table_reads_as_one_line_per_row_under_its_header():
    chinese = (
        "运费如下：\n| 方式 | 发货后时效 | 运费 |\n|---|:---:|---|\n"
        "| **国际标准件** | 7-15个工作日 | ¥120起 |\n| 国际特快件 | 3-7个工作日 | – |\n"
        "- 满¥999免运费"
    )
    assert readable_lines(chinese) == [
        "运费如下：",
        "国际标准件：发货后时效 7-15个工作日；运费 ¥120起",
        "国际特快件：发货后时效 3-7个工作日",
        "满¥999免运费",
    ]
    english = "| Tier | Spend | Points |\n|---|---|---|\n| Silver | ¥1,000 | 1.2x |"
    assert readable_lines(english) == ["Silver: Spend ¥1,000; Points 1.2x"]
    # A line with a pipe that is no table stays as it is.
    assert readable_lines("| not a table") == ["| not a table"]
