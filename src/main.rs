fn main() {
    let path = std::env::args().nth(1).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let (tree, diags) = flowc::syntax::parse(flowc::source::FileId(0), &text);
    println!("{} items", tree.items.len());
    let mut map = flowc::source::SourceMap::default();
    map.add(flowc::source::SourceFile::new(path, text));
    print!("{}", flowc::diagnostic::render_human(&diags, &map, false, 80));
}
